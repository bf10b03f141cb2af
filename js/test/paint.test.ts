import { describe, it } from "node:test";
import { expect } from "expect";
import { maskFromRows, maskHas, maskToRows, type Mask, trimMask } from "../src/canvas/mask";
import type { Obj } from "../src/canvas/objects";
import { type EditContext, MaskEdit, relabel } from "../src/canvas/paint";

const W = 40;
const H = 30;

function obj(id: string, label: number, mask: Mask, source: "user" | "prelabel" = "user", score: number | null = null): Obj {
  const t = trimMask(mask)!;
  return { id, label, box: [t.x, t.y, t.x + t.w, t.y + t.h], source, score, mask };
}

function square(x: number, y: number, n: number): Mask {
  return maskFromRows(Array.from({ length: n }, () => "1".repeat(n)), x, y);
}

const ctx = (over: Partial<EditContext> = {}): EditContext => ({
  W, H, threshold: 0.5, semantic: false, label: 0, selected: "", ...over,
});

describe("instance mode", () => {
  it("a brush stroke with nothing selected creates a new instance of the current class and selects it", () => {
    const a = obj("s0", 1, square(0, 0, 4));
    const e = new MaskEdit([a], ctx({ label: 2 }), "paint");
    e.segment(20.5, 10.5, 25.5, 10.5, 1.5);
    const r = e.finish();
    expect(r.objects).toHaveLength(2);
    const n = r.objects[1];
    expect(n.id).toBe("u0");
    expect(n.label).toBe(2);
    expect(n.source).toBe("user");
    expect(r.selected).toBe("u0");
    expect(n.box).toEqual([19, 9, 27, 12]);
    expect(r.objects[0]).toBe(a); // untouched objects are the same objects
  });

  it("a brush stroke with an instance selected adds to it, without touching the original mask", () => {
    const m = square(5, 5, 3);
    const a = obj("p0", 0, m, "prelabel", 0.9);
    const e = new MaskEdit([a], ctx({ selected: "p0" }), "paint");
    e.segment(9.5, 6.5, 12.5, 6.5, 0.5);
    const { objects, selected } = e.finish();
    expect(selected).toBe("p0");
    const b = objects[0];
    expect(b.source).toBe("user"); // painting a pre-label makes it the user's
    expect(b.score).toBeNull();
    expect(b.box).toEqual([5, 5, 13, 8]);
    expect(maskHas(b.mask!, 12, 6)).toBe(true);
    // copy-on-write: the undo history still holds the old pixels
    expect(maskToRows(m)).toEqual(["111", "111", "111"]);
    expect(a.mask).toBe(m);
  });

  it("the eraser erases from the selected instance only", () => {
    const a = obj("a", 0, square(0, 0, 10));
    const b = obj("b", 1, square(0, 0, 10));
    const e = new MaskEdit([a, b], ctx({ selected: "a" }), "erase");
    e.segment(0, 5, 10, 5, 2);
    const r = e.finish();
    expect(maskHas(r.objects[0].mask!, 5, 5)).toBe(false);
    expect(r.objects[1]).toBe(b);
  });

  it("with nothing selected the eraser erases from every instance under it", () => {
    const a = obj("a", 0, square(0, 0, 10));
    const b = obj("b", 1, square(5, 0, 10));
    const far = obj("far", 1, square(30, 20, 5));
    const e = new MaskEdit([a, b, far], ctx(), "erase");
    e.segment(7.5, 0, 7.5, 10, 1);
    const r = e.finish();
    expect(maskHas(r.objects[0].mask!, 7, 5)).toBe(false);
    expect(maskHas(r.objects[1].mask!, 7, 5)).toBe(false);
    expect(r.objects[2]).toBe(far);
  });

  it("an instance erased to nothing is removed, and deselected", () => {
    const a = obj("a", 0, square(2, 2, 2));
    const e = new MaskEdit([a], ctx({ selected: "a" }), "erase");
    e.segment(3, 3, 3, 3, 5);
    expect(e.finish()).toEqual({ objects: [], selected: "" });
  });

  it("a stroke entirely outside the image changes nothing (and does not throw)", () => {
    const a = obj("a", 0, square(0, 0, 4));
    for (const mode of ["paint", "erase"] as const) {
      for (const sel of ["", "a"]) {
        const e = new MaskEdit([a], ctx({ selected: sel }), mode);
        e.segment(-30, -30, -20, -25, 3);
        e.segment(W + 20, 5, W + 40, 5, 3);
        e.polygon([{ x: -9, y: -9 }, { x: -5, y: -9 }, { x: -5, y: -5 }]);
        expect(e.hasChanges).toBe(false);
        expect(e.finish().objects).toEqual([a]);
      }
    }
  });

  it("hidden pre-labels are not erased", () => {
    const hidden = obj("p1", 0, square(0, 0, 10), "prelabel", 0.1);
    const e = new MaskEdit([hidden], ctx(), "erase");
    e.segment(5, 5, 5, 5, 3);
    expect(e.hasChanges).toBe(false);
    expect(e.finish().objects[0]).toBe(hidden);
  });

  it("a polygon fills into a new instance", () => {
    const e = new MaskEdit([], ctx({ label: 1 }), "paint");
    e.polygon([{ x: 2, y: 2 }, { x: 6, y: 2 }, { x: 6, y: 5 }, { x: 2, y: 5 }]);
    const r = e.finish();
    expect(r.objects).toHaveLength(1);
    expect(r.objects[0].box).toEqual([2, 2, 6, 5]);
    expect(r.objects[0].label).toBe(1);
  });

  it("fill fills a hole of the selected instance, and explains when there is none", () => {
    const ring = maskFromRows(["11111", "10001", "10001", "11111"], 3, 3);
    const a = obj("a", 0, ring);
    const e = new MaskEdit([a], ctx({ selected: "a" }), "paint");
    expect(e.fillHole(4.5, 4.5)).toBeNull();
    const filled = e.finish().objects[0].mask!;
    expect(maskToRows(trimMask(filled)!)).toEqual(["11111", "11111", "11111", "11111"]);

    const open = obj("o", 0, maskFromRows(["11111", "10000", "11111"]));
    expect(new MaskEdit([open], ctx({ selected: "o" }), "paint").fillHole(1.5, 1.5)).toMatch(/not enclosed/);
    expect(new MaskEdit([open], ctx(), "paint").fillHole(1.5, 1.5)).toMatch(/Select a mask/);
  });
});

describe("semantic mode (one mask per class)", () => {
  it("the brush paints into the class mask and removes those pixels from the other classes", () => {
    const bg = obj("s0", 0, square(0, 0, 20));
    const fg = obj("s1", 1, square(20, 0, 10));
    const e = new MaskEdit([bg, fg], ctx({ semantic: true, label: 1, selected: "s0" }), "paint");
    e.segment(10.5, 5.5, 15.5, 5.5, 2);
    const r = e.finish();
    const [bg2, fg2] = r.objects;
    expect(fg2.id).toBe("s1"); // painted into the existing class-1 mask, whatever was selected
    expect(maskHas(fg2.mask!, 12, 5)).toBe(true);
    expect(maskHas(bg2.mask!, 12, 5)).toBe(false);
    expect(maskHas(bg2.mask!, 5, 5)).toBe(true);
    // no pixel belongs to two classes
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) expect(maskHas(bg2.mask!, x, y) && maskHas(fg2.mask!, x, y)).toBe(false);
  });

  it("creates the class mask when the class has none", () => {
    const bg = obj("s0", 0, square(0, 0, 20));
    const e = new MaskEdit([bg], ctx({ semantic: true, label: 2 }), "paint");
    e.segment(5, 5, 5, 5, 2);
    const r = e.finish();
    expect(r.objects.map((o) => [o.id, o.label])).toEqual([["s0", 0], ["u0", 2]]);
    expect(maskHas(r.objects[0].mask!, 5, 5)).toBe(false);
  });

  it("the eraser clears any class", () => {
    const a = obj("a", 0, square(0, 0, 10));
    const b = obj("b", 1, square(10, 0, 10));
    const e = new MaskEdit([a, b], ctx({ semantic: true, label: 0, selected: "a" }), "erase");
    e.segment(8, 5, 12, 5, 1);
    const [a2, b2] = e.finish().objects;
    expect(maskHas(a2.mask!, 9, 5)).toBe(false);
    expect(maskHas(b2.mask!, 10, 5)).toBe(false);
  });

  it("a polygon takes its pixels from the other classes", () => {
    const a = obj("a", 0, square(0, 0, 10));
    const e = new MaskEdit([a], ctx({ semantic: true, label: 1 }), "paint");
    e.polygon([{ x: 0, y: 0 }, { x: 5, y: 0 }, { x: 5, y: 5 }, { x: 0, y: 5 }]);
    const [a2, n] = e.finish().objects;
    expect(maskHas(a2.mask!, 2, 2)).toBe(false);
    expect(maskHas(a2.mask!, 7, 7)).toBe(true);
    expect(n.box).toEqual([0, 0, 5, 5]);
  });

  it("relabelling into a class that has a mask merges the two", () => {
    const a = obj("a", 0, square(0, 0, 3));
    const b = obj("b", 1, square(10, 10, 2));
    const r = relabel([a, b], "b", 0, true, W, H, 0.5);
    expect(r.selected).toBe("a");
    expect(r.objects).toHaveLength(1);
    expect(r.objects[0].box).toEqual([0, 0, 12, 12]);
    // instance mode just changes the class
    const i = relabel([a, b], "b", 0, false, W, H, 0.5);
    expect(i.objects.map((o) => o.label)).toEqual([0, 0]);
  });
});

describe("mask listener (render cache)", () => {
  it("is told when a working copy replaces a mask and which rect was painted", () => {
    const m = square(0, 0, 4);
    const a = obj("a", 0, m);
    const events: string[] = [];
    const e = new MaskEdit([a], ctx({ selected: "a" }), "paint", {
      replaced: (from, to) => events.push(`replaced ${from === m ? "orig" : "copy"} -> ${to.w}x${to.h}`),
      painted: (_m, r) => events.push(`painted ${r.x0},${r.y0},${r.x1},${r.y1}`),
    });
    e.segment(2, 2, 2, 2, 1);
    expect(events[0]).toBe("replaced orig -> 4x4");
    expect(events.some((s) => s.startsWith("painted"))).toBe(false); // nothing changed: all set already
    e.segment(20, 2, 20, 2, 1);
    expect(events.some((s) => s.startsWith("replaced copy"))).toBe(true); // the crop grew
    expect(events[events.length - 1]).toMatch(/^painted /);
  });
});
