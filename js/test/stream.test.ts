import { describe, it } from "node:test";
import { expect } from "expect";
import { commandFor, keyHelp, type KeyLike } from "../src/canvas/keys";
import type { Point, View } from "../src/canvas/geometry";
import { Tools, type ToolHost } from "../src/canvas/tools";
import type { Tool } from "../src/canvas/keys";
import { adapterText, busyText, counters, thumbState } from "../src/stream/format";

describe("stream strip text", () => {
  it("the adapter indicator: updates, last update, parameters; training while one runs", () => {
    const stats = { updates: 3, last_update_seconds: 0.4219, last_update_epochs: 14, adapter_parameters: 2824, adapt: true };
    expect(adapterText(stats, "")).toBe("adapter: 3 updates · last 0.42 s (14 epochs) · 2,824 params");
    expect(adapterText({ ...stats, updates: 1, last_update_epochs: 1 }, "")).toBe(
      "adapter: 1 update · last 0.42 s (1 epoch) · 2,824 params");
    expect(adapterText(stats, "training")).toBe("adapter: training…");
    expect(adapterText({ updates: 0, adapter_parameters: 10, last_update_seconds: null }, "")).toBe(
      "adapter: 0 updates · 10 params");
    expect(adapterText({ ...stats, adapter_name: "membranes" }, "")).toContain("from membranes");
    expect(adapterText({ ...stats, adapt: false }, "")).toContain("adapter off");
    expect(adapterText({ ...stats, reverted: 2 }, "")).toMatch(/^adapter: 3 updates \(2 taken back\) · /);
    expect(adapterText({ ...stats, reverted: 0 }, "")).not.toContain("taken back");
  });

  it("counters: frame position (done at the end), corrections, accepted, clicks on this frame", () => {
    const stats = { frames: 10, corrections: 2, accepted: 1, full_corrections: 1 };
    const c = Object.fromEntries(counters(stats, 3, 5, 2).map((x) => [x.key, x.value]));
    expect(c).toEqual({ frame: "4 / 10", corrections: "2", accepted: "1", clicks: "5 (2 here)" });
    expect(counters(stats, 10, 5, 0).find((x) => x.key === "frame")!.value).toBe("done (10)");
    expect(counters(stats, 10, 5, 0).find((x) => x.key === "clicks")!.value).toBe("5");
    expect(counters({}, 0, 0, 0).find((x) => x.key === "corrections")!.value).toBe("0");
  });

  it("thumbnails: done frames are marked and clickable, frames ahead are not", () => {
    const marks = ["accepted", "corrected", "", ""];
    expect(thumbState(marks, 0, 2, -1)).toMatchObject({ state: "accepted", badge: "✓", clickable: true, current: false });
    expect(thumbState(marks, 1, 2, -1)).toMatchObject({ state: "corrected", badge: "✎", clickable: true });
    expect(thumbState(marks, 2, 2, -1)).toMatchObject({ state: "todo", current: true, clickable: false, badge: "" });
    expect(thumbState(marks, 2, 2, 0)).toMatchObject({ current: true, clickable: true }); // back from a look back
    expect(thumbState(marks, 0, 2, 0)).toMatchObject({ viewing: true });
    expect(thumbState(marks, 3, 2, -1).clickable).toBe(false);
    expect(thumbState(["<b>x</b>"], 0, 1, -1).state).toBe("todo"); // unknown marks are not trusted
  });

  it("busy line", () => {
    expect(busyText("training")).toContain("Training");
    expect(busyText("")).toBe("");
  });
});

describe("the click tool", () => {
  const key = (k: string, mods: Partial<KeyLike> = {}): KeyLike =>
    ({ key: k, code: `Key${k.toUpperCase()}`, shiftKey: false, ctrlKey: false, metaKey: false, altKey: false, ...mods });

  it("K chooses it for masks only; C keeps giving the selected object the class", () => {
    expect(commandFor(key("k"), { task: "segmentation", polygon: false })).toEqual({ kind: "tool", tool: "click" });
    expect(commandFor(key("k"), { task: "detection", polygon: false })).toBeNull();
    expect(commandFor(key("c"), { task: "segmentation", polygon: false })).toEqual({ kind: "assign" });
    expect(keyHelp("segmentation", true).some(([k]) => k === "K")).toBe(true);
    expect(keyHelp("segmentation").some(([k]) => k === "K")).toBe(false);
  });

  function fakeHost(tool: Tool, editable = true) {
    const sent: { p: Point; positive: boolean }[] = [];
    const views: View[] = [];
    const host: ToolHost & { view: View } = {
      task: "segmentation", tool, view: { scale: 2, ox: 10, oy: 0 }, imageSize: [100, 80], objects: [], selected: "", picked: false,
      label: 0, brushSize: 10, semantic: true, threshold: 0.3, editable,
      maskListener: { replaced: () => {}, painted: () => {} },
      visible: () => [], setView: (v) => { views.push(v); host.view = v; }, select: () => {}, commit: () => {},
      setLive: () => {}, setDraftBox: () => {}, toast: () => {}, redraw: () => {},
      sendClick: (p, positive) => sent.push({ p, positive }),
    };
    return { host, sent, views };
  }

  it("left click adds, Shift+click and right click remove, in image pixels", () => {
    const { host, sent } = fakeHost("click");
    const tools = new Tools(host);
    const none = { alt: false, shift: false };
    expect(tools.down({ x: 50, y: 40 }, 0, none)).toBe(true);
    tools.up({ x: 51, y: 40 });
    tools.down({ x: 30, y: 20 }, 0, { alt: false, shift: true });
    tools.up({ x: 30, y: 20 });
    tools.down({ x: 70, y: 60 }, 2, none);
    tools.up({ x: 70, y: 60 });
    expect(sent).toEqual([
      { p: { x: 20, y: 20 }, positive: true },
      { p: { x: 10, y: 10 }, positive: false },
      { p: { x: 30, y: 30 }, positive: false },
    ]);
    expect(tools.cursorAt({ x: 0, y: 0 })).toBe("crosshair");
  });

  it("a drag pans instead of clicking; a view-only image takes no clicks", () => {
    const { host, sent, views } = fakeHost("click");
    const tools = new Tools(host);
    tools.down({ x: 50, y: 40 }, 0, { alt: false, shift: false });
    tools.move({ x: 80, y: 40 });
    tools.up({ x: 80, y: 40 });
    expect(sent).toEqual([]);
    expect(views[views.length - 1]).toEqual({ scale: 2, ox: 40, oy: 0 });

    const ro = fakeHost("click", false);
    const t2 = new Tools(ro.host);
    t2.down({ x: 50, y: 40 }, 0, { alt: false, shift: false });
    t2.up({ x: 50, y: 40 });
    expect(ro.sent).toEqual([]);
  });

  it("other tools never ask the kernel", () => {
    const { host, sent } = fakeHost("box");
    const tools = new Tools(host);
    tools.down({ x: 50, y: 40 }, 0, { alt: false, shift: false });
    tools.up({ x: 50, y: 40 });
    expect(sent).toEqual([]);
  });
});
