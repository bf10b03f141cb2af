// The key map: a pure function from a key event to a command, per task, so node tests pin it down.
//
// Letters are matched by the character they type (B for brush wherever B is on the keyboard), falling
// back to the physical key for layouts whose letters are not Latin; digits by the physical key too,
// so AZERTY users need no Shift. The familiar jupyter-bbox-widget keys come first (digits, C, Tab,
// W/A/S/D, Q/E, F/R, Enter, Space, Esc), then ours.

import type { CanvasAction, Task } from "../protocol";

export interface KeyLike {
  key: string;
  code: string;
  shiftKey: boolean;
  ctrlKey: boolean;
  metaKey: boolean;
  altKey: boolean;
}

export interface KeyContext {
  task: Task;
  /** a polygon is being drawn (Enter closes it, Backspace removes its last vertex, Esc cancels) */
  polygon: boolean;
}

export type Tool = "box" | "brush" | "eraser" | "polygon" | "fill" | "pan" | "click";

export type Command =
  | { kind: "label"; index: number }
  | { kind: "assign" }
  | { kind: "cycle"; dir: 1 | -1 }
  | { kind: "move"; dx: number; dy: number }
  | { kind: "grow"; dw: number; dh: number }
  | { kind: "delete" }
  | { kind: "pan"; dx: number; dy: number }
  | { kind: "action"; action: CanvasAction }
  | { kind: "enter" }
  | { kind: "acceptAll" }
  | { kind: "discardAll" }
  | { kind: "acceptSelected" }
  | { kind: "undo" }
  | { kind: "redo" }
  | { kind: "zoom"; factor: number }
  | { kind: "fit" }
  | { kind: "tool"; tool: Tool }
  | { kind: "togglePan" }
  | { kind: "brushSize"; dir: 1 | -1 }
  | { kind: "newInstance" }
  | { kind: "escape" }
  | { kind: "polygonClose" }
  | { kind: "polygonUndo" }
  | { kind: "polygonCancel" }
  | { kind: "help" };

export const ZOOM_STEP = 1.25;
export const PAN_STEP = 40;

/** The lower-case Latin letter of a key event, or "" when it is not a letter key. */
function letterOf(e: KeyLike): string {
  if (/^[a-z]$/i.test(e.key)) return e.key.toLowerCase();
  const m = /^Key([A-Z])$/.exec(e.code);
  return m ? m[1].toLowerCase() : "";
}

function digitOf(e: KeyLike): number {
  const m = /^(?:Digit|Numpad)(\d)$/.exec(e.code);
  if (m) return Number(m[1]);
  return /^\d$/.test(e.key) ? Number(e.key) : -1;
}

export function commandFor(e: KeyLike, ctx: KeyContext): Command | null {
  const { task } = ctx;
  const boxes = task === "detection";
  const masks = task === "segmentation";
  const objects = boxes || masks;

  if (e.ctrlKey || e.metaKey) {
    // only undo / redo; every other Ctrl / Cmd combination keeps its browser meaning
    const l = letterOf(e);
    if (l === "z") return e.shiftKey ? { kind: "redo" } : { kind: "undo" };
    if (l === "y" && !e.shiftKey) return { kind: "redo" };
    return null;
  }
  if (e.altKey) return null;

  switch (e.key) {
    case "Escape":
      return ctx.polygon ? { kind: "polygonCancel" } : { kind: "escape" };
    case "Enter":
      if (ctx.polygon) return { kind: "polygonClose" };
      return task === "classification" ? { kind: "enter" } : { kind: "action", action: "submit" };
    case " ":
      return { kind: "action", action: e.shiftKey ? "back" : "skip" };
    case "Backspace":
      if (ctx.polygon) return { kind: "polygonUndo" };
      return objects ? { kind: "delete" } : null;
    case "Delete":
      return objects ? { kind: "delete" } : null;
    case "Tab":
      return objects ? { kind: "cycle", dir: e.shiftKey ? -1 : 1 } : null;
    case "ArrowLeft":
    case "ArrowRight":
    case "ArrowUp":
    case "ArrowDown": {
      // the arrows move the view (the image moves the other way, as when dragging it)
      const s = e.shiftKey ? PAN_STEP * 5 : PAN_STEP;
      const dx = e.key === "ArrowLeft" ? s : e.key === "ArrowRight" ? -s : 0;
      const dy = e.key === "ArrowUp" ? s : e.key === "ArrowDown" ? -s : 0;
      return { kind: "pan", dx, dy };
    }
    case "+":
    case "=":
      return { kind: "zoom", factor: ZOOM_STEP };
    case "-":
    case "_":
      return { kind: "zoom", factor: 1 / ZOOM_STEP };
    case "Home":
      return { kind: "fit" };
    case "?":
      return { kind: "help" };
    case "[":
    case "]":
      return masks ? { kind: "brushSize", dir: e.key === "]" ? 1 : -1 } : null;
  }

  const d = digitOf(e);
  if (d >= 0 && !e.shiftKey) return { kind: "label", index: d === 0 ? 9 : d - 1 };

  const l = letterOf(e);
  if (!l) return null;
  if (e.shiftKey) {
    if (l === "p") return { kind: "action", action: "predict" };
    if (boxes) {
      const big = boxKey(l, 10);
      if (big) return big;
    }
    return null;
  }
  switch (l) {
    case "y":
      return { kind: "acceptAll" };
    case "x":
      return { kind: "discardAll" };
    case "v":
      return { kind: "acceptSelected" };
    case "h":
      return { kind: "togglePan" };
    case "c":
      return objects ? { kind: "assign" } : null;
  }
  if (boxes) return boxKey(l, 1);
  if (masks) {
    switch (l) {
      case "b":
        return { kind: "tool", tool: "brush" };
      case "e":
        return { kind: "tool", tool: "eraser" };
      case "p":
        return { kind: "tool", tool: "polygon" };
      case "f":
        return { kind: "tool", tool: "fill" };
      case "s":
        return { kind: "tool", tool: "box" };
      case "n":
        return { kind: "newInstance" };
      case "k":
        return { kind: "tool", tool: "click" }; // offered only in the correction mode (click_tool)
    }
  }
  return null;
}

/** Whether a wheel event over the canvas zooms it: with Ctrl or ⌘ held, or a trackpad's pinch (browsers
 * send it as a wheel event with ctrlKey set). A plain wheel scrolls the page, as over any image in a
 * notebook. */
export function wheelZooms(e: Pick<KeyLike, "ctrlKey" | "metaKey">): boolean {
  return e.ctrlKey || e.metaKey;
}

/** Whether holding the key down may repeat the command. Moving on to another image must take one
 * press per image: a held Enter or Space would otherwise submit or skip a run of images, and a held
 * digit classify them. */
export function repeatable(cmd: Command, task: Task): boolean {
  switch (cmd.kind) {
    case "action":
    case "enter":
    case "togglePan":
    case "help":
    case "escape":
      return false;
    case "label":
      return task !== "classification";
    default:
      return true;
  }
}

/** jupyter-bbox-widget's keys for the selected box: W/A/S/D move, Q/E width, F/R height. */
function boxKey(l: string, step: number): Command | null {
  switch (l) {
    case "w":
      return { kind: "move", dx: 0, dy: -step };
    case "a":
      return { kind: "move", dx: -step, dy: 0 };
    case "s":
      return { kind: "move", dx: 0, dy: step };
    case "d":
      return { kind: "move", dx: step, dy: 0 };
    case "q":
      return { kind: "grow", dw: -step, dh: 0 };
    case "e":
      return { kind: "grow", dw: step, dh: 0 };
    case "f":
      return { kind: "grow", dw: 0, dh: -step };
    case "r":
      return { kind: "grow", dw: 0, dh: step };
  }
  return null;
}

/** The key map as the "?" overlay shows it; `clicks`: the click tool is offered (correction mode). */
export function keyHelp(task: Task, clicks = false): [string, string][] {
  const all: [string, string][] = [
    ["Enter", task === "classification" ? "submit the chosen class (or the suggestion)" : "submit this image"],
    ["Space / Shift+Space", "skip / go back"],
    ["Shift+P", "predict (ask the model for pre-labels)"],
    ["Y / X", task === "classification" ? "take the suggestion / —" : "accept all shown pre-labels / discard pre-labels"],
    ["Ctrl+Z / Ctrl+Shift+Z, Ctrl+Y", "undo / redo"],
    ["+ / − / Home", "zoom in / out / fit"],
    ["Ctrl + wheel (⌘ on a Mac), pinch", "zoom at the pointer (the wheel alone scrolls the page)"],
    ["Arrows, H, middle or right drag", "pan (H toggles the pan tool)"],
    ["Esc", "deselect; again to leave the canvas"],
  ];
  if (task === "classification") return [["1–9, 0", "choose that class and submit"], ...all];
  const common: [string, string][] = [
    ["1–9, 0", "choose the class for new objects"],
    ["C", "give the selected object the chosen class"],
    ["Tab / Shift+Tab", "select next / previous object"],
    ["Delete, Backspace", "delete the selected object"],
    ["V", "accept the selected pre-label"],
  ];
  if (task === "detection") {
    return [
      ...common,
      ["drag", "draw a box (also over other boxes); click a box to select it (handles), then drag it or its handles"],
      ["class chip", "the class for new boxes; with a box selected (handles), that box's class too"],
      ["W A S D (Shift ×10)", "move the selected box"],
      ["Q / E", "narrower / wider"],
      ["F / R", "shorter / taller"],
      ...all,
    ];
  }
  const clickTool: [string, string][] = clicks
    ? [["K", "click tool: a click adds to the chosen class's mask, Shift+click or right click removes; the model redraws"]]
    : [];
  return [
    ...clickTool,
    ...common,
    ["S", "select tool: click a mask to select it"],
    ["B / E", "brush / eraser"],
    ["P", "polygon: click vertices, Enter or double-click closes, Backspace undoes a vertex, Esc cancels"],
    ["F", "fill a hole of the selected mask"],
    ["[ / ]", "smaller / larger brush"],
    ["N", "the next stroke starts a new instance"],
    ...all,
  ];
}
