// Which object a gesture selects, and what a selection lets the next gesture do (issue 20, item 2: a box
// just drawn was silently selected, so a class chip clicked for the next box relabeled it).
import { describe, it } from "node:test";
import { expect } from "expect";
import type { View } from "../src/canvas/geometry";
import { wheelZooms } from "../src/canvas/keys";
import type { Obj } from "../src/canvas/objects";
import { Tools, type ToolHost } from "../src/canvas/tools";

const box = (id: string, b: [number, number, number, number], label = 0): Obj =>
  ({ id, label, box: b, source: "user", score: null, mask: null });

/** A detection canvas at scale 1: selecting on purpose picks (as CanvasHost.select does). */
function detectionHost(objects: Obj[]) {
  const commits: { objects: Obj[]; selected: string | undefined }[] = [];
  const host: ToolHost & { objects: Obj[]; selected: string; picked: boolean } = {
    task: "detection", tool: "box", view: { scale: 1, ox: 0, oy: 0 } as View, imageSize: [400, 300], objects,
    selected: "", picked: false, label: 1, brushSize: 10, semantic: false, threshold: 0.3, editable: true,
    maskListener: { replaced: () => {}, painted: () => {} },
    visible: () => host.objects,
    setView: () => {},
    select: (id) => {
      host.selected = id;
      host.picked = id !== "";
    },
    commit: (objs, selected) => {
      commits.push({ objects: objs, selected });
      host.objects = objs;
      if (selected !== undefined && selected !== host.selected) {
        host.selected = selected;
        host.picked = false;
      }
    },
    setLive: () => {}, setDraftBox: () => {}, toast: () => {}, redraw: () => {}, sendClick: () => {},
  };
  return { host, commits, tools: new Tools(host) };
}

const none = { alt: false, shift: false };
function drag(tools: Tools, a: [number, number], b: [number, number]): void {
  tools.down({ x: a[0], y: a[1] }, 0, none);
  tools.move({ x: (a[0] + b[0]) / 2, y: (a[1] + b[1]) / 2 });
  tools.move({ x: b[0], y: b[1] });
  tools.up({ x: b[0], y: b[1] });
}

describe("selection on purpose", () => {
  it("a box just drawn is not selected, and a selection made before ends", () => {
    const { host, commits, tools } = detectionHost([box("s0", [10, 10, 60, 60])]);
    tools.down({ x: 30, y: 30 }, 0, none);
    tools.up({ x: 30, y: 30 }); // a click picks s0 up
    expect([host.selected, host.picked, tools.grabbed]).toEqual(["s0", true, "s0"]);
    drag(tools, [200, 100], [260, 150]);
    expect(commits).toHaveLength(1);
    expect(commits[0].objects.map((o) => [o.id, o.label])).toEqual([["s0", 0], ["u0", 1]]);
    expect(commits[0].selected).toBe("");
    expect([host.selected, tools.grabbed]).toEqual(["", ""]);
  });

  it("only a box picked up moves when dragged; a drag from inside another box draws", () => {
    const { host, commits, tools } = detectionHost([box("s0", [10, 10, 60, 60]), box("s1", [100, 100, 160, 160])]);
    drag(tools, [30, 30], [50, 45]); // inside s0, nothing selected: a new box
    expect(commits[0].objects.map((o) => o.id)).toEqual(["s0", "s1", "u0"]);
    tools.down({ x: 130, y: 130 }, 0, none);
    tools.up({ x: 130, y: 130 }); // pick s1 up
    drag(tools, [130, 130], [140, 150]);
    expect(commits[1].objects.find((o) => o.id === "s1")!.box).toEqual([110, 120, 170, 180]);
    expect(host.selected).toBe("s1"); // a move keeps the selection, picked
    expect(tools.cursorAt({ x: 140, y: 150 })).toBe("move");
  });

  it("a selection an edit made (not picked) shows no handles and does not move", () => {
    const { host, commits, tools } = detectionHost([box("s0", [10, 10, 60, 60])]);
    host.selected = "s0";
    host.picked = false;
    expect(tools.grabbed).toBe("");
    expect(tools.cursorAt({ x: 30, y: 30 })).toBe("crosshair");
    drag(tools, [30, 30], [50, 50]);
    expect(commits[0].objects).toHaveLength(2); // drew, did not move s0
  });
});

describe("the wheel", () => {
  it("zooms only with Ctrl or ⌘ (a pinch arrives with ctrlKey); the plain wheel scrolls the page", () => {
    expect(wheelZooms({ ctrlKey: false, metaKey: false })).toBe(false);
    expect(wheelZooms({ ctrlKey: true, metaKey: false })).toBe(true);
    expect(wheelZooms({ ctrlKey: false, metaKey: true })).toBe(true);
  });
});
