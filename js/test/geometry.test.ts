import { describe, it } from "node:test";
import { expect } from "expect";
import {
  adjustBox, type Box, clampBox, fitView, hitTest, type Hittable, moveBox, normBox, resizeBox, toImage, toScreen,
  zoomAt, zoomLimits,
} from "../src/canvas/geometry";
import { maskFromRows, maskHas } from "../src/canvas/mask";
import { type Obj, visibleObjects } from "../src/canvas/objects";
import { hittables } from "../src/canvas/tools";

describe("screen ↔ image", () => {
  const v = { scale: 2.5, ox: 30, oy: -12 };
  it("round-trips", () => {
    const p = { x: 123.25, y: 77.5 };
    const s = toScreen(v, p);
    expect(s).toEqual({ x: 123.25 * 2.5 + 30, y: 77.5 * 2.5 - 12 });
    const back = toImage(v, s);
    expect(back.x).toBeCloseTo(p.x, 10);
    expect(back.y).toBeCloseTo(p.y, 10);
  });

  it("fit centres the whole image with a margin, limited by the tighter side", () => {
    // a tall image in a wide viewport: height limits
    const f = fitView(2299, 2472, 900, 560, 8);
    expect(f.scale).toBeCloseTo((560 - 16) / 2472, 10);
    expect(toScreen(f, { x: 0, y: 0 }).y).toBeCloseTo(8, 6);
    expect(toScreen(f, { x: 0, y: 2472 }).y).toBeCloseTo(552, 6);
    const cx = toScreen(f, { x: 2299 / 2, y: 0 }).x;
    expect(cx).toBeCloseTo(450, 6);
    // a wide image: width limits
    const g = fitView(640, 480, 500, 560, 10);
    expect(g.scale).toBeCloseTo(480 / 640, 10);
    expect(toScreen(g, { x: 640, y: 0 }).x).toBeCloseTo(490, 6);
    expect(toScreen(g, { x: 0, y: 240 }).y).toBeCloseTo(280, 6);
  });

  it("zoom at the cursor keeps the image point under the cursor fixed", () => {
    const fit = fitView(640, 480, 800, 600);
    const lim = zoomLimits(fit);
    const cursor = { x: 611, y: 97 };
    const before = toImage(fit, cursor);
    const z = zoomAt(fit, 1.7, cursor.x, cursor.y, lim);
    expect(z.scale).toBeCloseTo(fit.scale * 1.7, 10);
    const after = toImage(z, cursor);
    expect(after.x).toBeCloseTo(before.x, 9);
    expect(after.y).toBeCloseTo(before.y, 9);
  });

  it("zoom is clamped, and still keeps the point fixed", () => {
    const fit = fitView(640, 480, 800, 600);
    const lim = zoomLimits(fit);
    const cursor = { x: 100, y: 200 };
    const z = zoomAt(fit, 1e6, cursor.x, cursor.y, lim);
    expect(z.scale).toBe(lim[1]);
    const p0 = toImage(fit, cursor);
    const p1 = toImage(z, cursor);
    expect(p1.x).toBeCloseTo(p0.x, 9);
    expect(zoomAt(fit, 1e-6, 0, 0, lim).scale).toBe(lim[0]);
  });
});

describe("box operations", () => {
  it("normalises inverted drags", () => {
    expect(normBox([50, 40, 10, 5])).toEqual([10, 5, 50, 40]);
    expect(clampBox([50, 40, -10, 500], 100, 100)).toEqual([0, 40, 50, 100]);
  });

  it("moves, stopping at the border without changing size", () => {
    expect(moveBox([10, 10, 30, 20], 5, -3, 100, 100)).toEqual([15, 7, 35, 17]);
    expect(moveBox([10, 10, 30, 20], 500, -500, 100, 100)).toEqual([80, 0, 100, 10]);
    expect(moveBox([10, 10, 30, 20], -500, 500, 100, 100)).toEqual([0, 90, 20, 100]);
  });

  it("resizes by a handle, clamps, and flips when dragged past the opposite edge", () => {
    const b: Box = [10, 10, 30, 20];
    expect(resizeBox(b, "se", 5, 5, 100, 100)).toEqual([10, 10, 35, 25]);
    expect(resizeBox(b, "nw", -5, -20, 100, 100)).toEqual([5, 0, 30, 20]);
    expect(resizeBox(b, "n", 99, 3, 100, 100)).toEqual([10, 13, 30, 20]);
    expect(resizeBox(b, "e", 100, 0, 100, 100)).toEqual([10, 10, 100, 20]);
    // the west edge dragged 30 px right passes the east edge: the box flips
    expect(resizeBox(b, "w", 30, 0, 100, 100)).toEqual([30, 10, 40, 20]);
  });

  it("keyboard width/height changes move the right/bottom edge, never below 1 px", () => {
    expect(adjustBox([10, 10, 30, 20], 1, 0, 100, 100)).toEqual([10, 10, 31, 20]);
    expect(adjustBox([10, 10, 30, 20], 0, -10, 100, 100)).toEqual([10, 10, 30, 11]);
    expect(adjustBox([10, 10, 30, 20], 200, 0, 100, 100)).toEqual([10, 10, 100, 20]);
  });
});

describe("hit-testing", () => {
  const v = { scale: 2, ox: 0, oy: 0 }; // image px × 2 = screen px
  const big: Hittable = { id: "big", box: [10, 10, 110, 110] };
  const small: Hittable = { id: "small", box: [40, 40, 60, 60] };
  const at = (x: number, y: number) => ({ x: x * 2, y: y * 2 });

  it("picks the smallest object containing the point (nested boxes stay reachable)", () => {
    expect(hitTest([small, big], at(50, 50), v)).toEqual({ id: "small", part: "inside" });
    expect(hitTest([big, small], at(50, 50), v)).toEqual({ id: "small", part: "inside" });
    expect(hitTest([big, small], at(20, 20), v)).toEqual({ id: "big", part: "inside" });
    expect(hitTest([big, small], at(200, 200), v)).toBeNull();
  });

  it("among equal areas, the topmost (last drawn) wins", () => {
    const a: Hittable = { id: "a", box: [0, 0, 10, 10] };
    const b: Hittable = { id: "b", box: [0, 0, 10, 10] };
    expect(hitTest([a, b], at(5, 5), v)?.id).toBe("b");
  });

  it("tolerance is in screen pixels whatever the zoom", () => {
    // 5 screen px outside the big box's left edge: within 6 px tolerance
    expect(hitTest([big], { x: 20 - 5, y: 100 }, v, { tol: 6 })?.id).toBe("big");
    expect(hitTest([big], { x: 20 - 8, y: 100 }, v, { tol: 6 })).toBeNull();
    const zoomed = { scale: 20, ox: 0, oy: 0 };
    expect(hitTest([big], { x: 200 - 5, y: 1000 }, zoomed, { tol: 6 })?.id).toBe("big");
    expect(hitTest([big], { x: 200 - 8, y: 1000 }, zoomed, { tol: 6 })).toBeNull();
  });

  it("only the selected object has handles and resizable edges", () => {
    // the big box's south-east corner
    expect(hitTest([big, small], at(110, 110), v, { tol: 6 })).toEqual({ id: "big", part: "inside" });
    expect(hitTest([big, small], at(110, 110), v, { tol: 6, selected: "big" })).toEqual({ id: "big", part: "se" });
    expect(hitTest([big, small], at(60, 10), v, { tol: 6, selected: "big" })).toEqual({ id: "big", part: "n" });
    // along the west edge, away from the handles
    expect(hitTest([big, small], { x: 21, y: 60 }, v, { tol: 6, selected: "big" })).toEqual({ id: "big", part: "w" });
    // the middle of the selected box moves it
    expect(hitTest([big], at(80, 80), v, { tol: 6, selected: "big" })).toEqual({ id: "big", part: "inside" });
    // a handle of the selected box wins over a smaller box under it
    const corner: Hittable = { id: "corner", box: [105, 105, 115, 115] };
    expect(hitTest([big, corner], at(110, 110), v, { tol: 6, selected: "big" })?.part).toBe("se");
    // masks have no handles
    expect(hitTest([big], at(110, 110), v, { tol: 6, selected: "big", handles: false })?.part).toBe("inside");
    // a selected box that was not picked up (just drawn) offers neither handles nor edges
    expect(hitTest([big], { x: 21, y: 60 }, v, { tol: 6, selected: "big", handles: false })?.part).toBe("inside");
  });

  it("objects not passed (hidden pre-labels) are never hit", () => {
    const hidden = { id: "hidden", box: [0, 0, 200, 200] as Box };
    const shown = [big];
    expect(hitTest(shown, at(5, 5), v)).toBeNull();
    expect(hitTest([...shown, hidden], at(5, 5), v)?.id).toBe("hidden");
  });

  it("masks hit by their pixels, not their box", () => {
    const ring = maskFromRows(["1111", "1001", "1001", "1111"], 10, 10);
    const o: Hittable = { id: "ring", box: [10, 10, 14, 14], inside: (x, y, r) => maskHas(ring, x, y, r) };
    const v1 = { scale: 10, ox: 0, oy: 0 };
    expect(hitTest([o], { x: 105, y: 105 }, v1, { tol: 3 })?.id).toBe("ring");
    expect(hitTest([o], { x: 125, y: 125 }, v1, { tol: 3 })).toBeNull(); // in the hole
  });
});

describe("hit-testing what the canvas shows", () => {
  it("a pre-label below the threshold is not hit, one above is", () => {
    const pre = (id: string, score: number): Obj => ({ id, label: 0, box: [0, 0, 50, 50], source: "prelabel", score, mask: null });
    const objs = [pre("low", 0.1), pre("high", 0.8)];
    const v = { scale: 1, ox: 0, oy: 0 };
    expect(hitTest(hittables(visibleObjects(objs, 0.3)), { x: 10, y: 10 }, v)?.id).toBe("high");
    expect(hitTest(hittables(visibleObjects([objs[0]], 0.3)), { x: 10, y: 10 }, v)).toBeNull();
    expect(hitTest(hittables(visibleObjects([objs[0]], 0.05)), { x: 10, y: 10 }, v)?.id).toBe("low");
  });
});
