import { describe, it } from "node:test";
import { expect } from "expect";
import { commandFor, type KeyContext, type KeyLike, repeatable } from "../src/canvas/keys";

function key(k: string, mods: Partial<KeyLike> = {}): KeyLike {
  const code = /^[a-z]$/i.test(k) ? `Key${k.toUpperCase()}` : /^\d$/.test(k) ? `Digit${k}` : k;
  return { key: k, code, shiftKey: false, ctrlKey: false, metaKey: false, altKey: false, ...mods };
}
const det: KeyContext = { task: "detection", polygon: false };
const seg: KeyContext = { task: "segmentation", polygon: false };
const cls: KeyContext = { task: "classification", polygon: false };

describe("keymap: every task", () => {
  it("Enter submits, Space skips, Shift+Space goes back, Shift+P predicts", () => {
    for (const ctx of [det, seg]) {
      expect(commandFor(key("Enter"), ctx)).toEqual({ kind: "action", action: "submit" });
      expect(commandFor(key(" "), ctx)).toEqual({ kind: "action", action: "skip" });
      expect(commandFor(key(" ", { shiftKey: true }), ctx)).toEqual({ kind: "action", action: "back" });
      expect(commandFor(key("P", { shiftKey: true }), ctx)).toEqual({ kind: "action", action: "predict" });
    }
    expect(commandFor(key("P", { shiftKey: true }), cls)).toEqual({ kind: "action", action: "predict" });
  });

  it("undo / redo with Ctrl or Cmd; other Ctrl combinations stay the browser's", () => {
    expect(commandFor(key("z", { ctrlKey: true }), det)).toEqual({ kind: "undo" });
    expect(commandFor(key("z", { metaKey: true }), seg)).toEqual({ kind: "undo" });
    expect(commandFor(key("Z", { ctrlKey: true, shiftKey: true }), det)).toEqual({ kind: "redo" });
    expect(commandFor(key("y", { ctrlKey: true }), det)).toEqual({ kind: "redo" });
    expect(commandFor(key("c", { ctrlKey: true }), det)).toBeNull();
    expect(commandFor(key("a", { altKey: true }), det)).toBeNull();
  });

  it("pre-labels, zoom, view", () => {
    expect(commandFor(key("y"), det)).toEqual({ kind: "acceptAll" });
    expect(commandFor(key("x"), seg)).toEqual({ kind: "discardAll" });
    expect(commandFor(key("v"), det)).toEqual({ kind: "acceptSelected" });
    expect(commandFor(key("+"), det)).toMatchObject({ kind: "zoom" });
    expect((commandFor(key("="), det) as { factor: number }).factor).toBeGreaterThan(1);
    expect((commandFor(key("-"), det) as { factor: number }).factor).toBeLessThan(1);
    expect(commandFor(key("Home"), det)).toEqual({ kind: "fit" });
    expect(commandFor(key("h"), seg)).toEqual({ kind: "togglePan" });
    expect(commandFor(key("ArrowLeft"), det)).toMatchObject({ kind: "pan", dy: 0 });
    expect(commandFor(key("?"), det)).toEqual({ kind: "help" });
    expect(commandFor(key("Escape"), det)).toEqual({ kind: "escape" });
  });

  it("digits choose classes (0 is the tenth), by physical key so AZERTY needs no Shift", () => {
    expect(commandFor(key("1"), det)).toEqual({ kind: "label", index: 0 });
    expect(commandFor(key("0"), seg)).toEqual({ kind: "label", index: 9 });
    expect(commandFor({ ...key("&"), code: "Digit1" }, det)).toEqual({ kind: "label", index: 0 });
    expect(commandFor({ ...key("3"), code: "Numpad3" }, cls)).toEqual({ kind: "label", index: 2 });
  });
});

describe("keymap: detection (jupyter-bbox-widget's keys)", () => {
  it("W/A/S/D move by 1, Shift by 10", () => {
    expect(commandFor(key("w"), det)).toEqual({ kind: "move", dx: 0, dy: -1 });
    expect(commandFor(key("a"), det)).toEqual({ kind: "move", dx: -1, dy: 0 });
    expect(commandFor(key("s"), det)).toEqual({ kind: "move", dx: 0, dy: 1 });
    expect(commandFor(key("d"), det)).toEqual({ kind: "move", dx: 1, dy: 0 });
    expect(commandFor(key("D", { shiftKey: true }), det)).toEqual({ kind: "move", dx: 10, dy: 0 });
  });

  it("Q/E shrink/grow width, F/R shrink/grow height, C assigns, Tab cycles, Delete deletes", () => {
    expect(commandFor(key("q"), det)).toEqual({ kind: "grow", dw: -1, dh: 0 });
    expect(commandFor(key("e"), det)).toEqual({ kind: "grow", dw: 1, dh: 0 });
    expect(commandFor(key("f"), det)).toEqual({ kind: "grow", dw: 0, dh: -1 });
    expect(commandFor(key("r"), det)).toEqual({ kind: "grow", dw: 0, dh: 1 });
    expect(commandFor(key("c"), det)).toEqual({ kind: "assign" });
    expect(commandFor(key("Tab"), det)).toEqual({ kind: "cycle", dir: 1 });
    expect(commandFor(key("Tab", { shiftKey: true }), det)).toEqual({ kind: "cycle", dir: -1 });
    expect(commandFor(key("Delete"), det)).toEqual({ kind: "delete" });
    expect(commandFor(key("Backspace"), det)).toEqual({ kind: "delete" });
  });

  it("has no mask tools", () => {
    expect(commandFor(key("b"), det)).toBeNull();
    expect(commandFor(key("p"), det)).toBeNull();
    expect(commandFor(key("["), det)).toBeNull();
  });
});

describe("keymap: segmentation (mask tools win over box keys)", () => {
  it("B/E/P/F/S choose tools, N starts a new instance, [ ] size the brush", () => {
    expect(commandFor(key("b"), seg)).toEqual({ kind: "tool", tool: "brush" });
    expect(commandFor(key("e"), seg)).toEqual({ kind: "tool", tool: "eraser" });
    expect(commandFor(key("p"), seg)).toEqual({ kind: "tool", tool: "polygon" });
    expect(commandFor(key("f"), seg)).toEqual({ kind: "tool", tool: "fill" });
    expect(commandFor(key("s"), seg)).toEqual({ kind: "tool", tool: "box" });
    expect(commandFor(key("n"), seg)).toEqual({ kind: "newInstance" });
    expect(commandFor(key("["), seg)).toEqual({ kind: "brushSize", dir: -1 });
    expect(commandFor(key("]"), seg)).toEqual({ kind: "brushSize", dir: 1 });
    expect(commandFor(key("w"), seg)).toBeNull();
    expect(commandFor(key("q"), seg)).toBeNull();
    expect(commandFor(key("c"), seg)).toEqual({ kind: "assign" });
    expect(commandFor(key("Tab"), seg)).toEqual({ kind: "cycle", dir: 1 });
  });

  it("while a polygon is drawn, Enter closes it, Backspace removes a vertex, Esc cancels", () => {
    const poly = { ...seg, polygon: true };
    expect(commandFor(key("Enter"), poly)).toEqual({ kind: "polygonClose" });
    expect(commandFor(key("Backspace"), poly)).toEqual({ kind: "polygonUndo" });
    expect(commandFor(key("Escape"), poly)).toEqual({ kind: "polygonCancel" });
  });

  it("letters of non-Latin layouts fall back to the physical key", () => {
    expect(commandFor({ ...key("и"), code: "KeyB" }, seg)).toEqual({ kind: "tool", tool: "brush" });
  });
});

describe("keymap: classification", () => {
  it("Enter takes the category (or the suggestion); no object keys", () => {
    expect(commandFor(key("Enter"), cls)).toEqual({ kind: "enter" });
    expect(commandFor(key("Tab"), cls)).toBeNull();
    expect(commandFor(key("Delete"), cls)).toBeNull();
    expect(commandFor(key("w"), cls)).toBeNull();
    expect(commandFor(key("c"), cls)).toBeNull();
  });
});

describe("held keys", () => {
  it("never submit, skip or classify a run of images; nudges and zoom do repeat", () => {
    expect(repeatable(commandFor(key("Enter"), det)!, "detection")).toBe(false);
    expect(repeatable(commandFor(key(" "), seg)!, "segmentation")).toBe(false);
    expect(repeatable(commandFor(key("Enter"), cls)!, "classification")).toBe(false);
    expect(repeatable(commandFor(key("2"), cls)!, "classification")).toBe(false);
    expect(repeatable(commandFor(key("2"), det)!, "detection")).toBe(true);
    expect(repeatable(commandFor(key("d"), det)!, "detection")).toBe(true);
    expect(repeatable(commandFor(key("+"), seg)!, "segmentation")).toBe(true);
    expect(repeatable(commandFor(key("z", { ctrlKey: true }), seg)!, "segmentation")).toBe(true);
  });
});
