import { describe, it } from "node:test";
import { expect } from "expect";
import type { WireObject } from "../src/protocol";
import { decodeRle, encodeRle, maskFromRows } from "../src/canvas/mask";
import {
  acceptAll, acceptOne, addBox, discardAll, fromWire, isVisible, moveObj, newId, type Obj, pendingCount, resizeObj,
  sameAsWire, setLabel, toWire, visibleObjects,
} from "../src/canvas/objects";

const box = (id: string, source: "user" | "prelabel" = "user", score: number | null = null, label = 0): Obj => ({
  id, label, box: [10, 10, 20, 20], source, score, mask: null,
});

describe("visibility follows the threshold (as Python's _codec.visible)", () => {
  const objs = [box("s0"), box("p0", "prelabel", 0.9), box("p1", "prelabel", 0.2), box("p2", "prelabel", null)];
  it("hides pre-labels scoring below it, never user objects", () => {
    expect(visibleObjects(objs, 0.3).map((o) => o.id)).toEqual(["s0", "p0", "p2"]);
    expect(pendingCount(objs, 0.3)).toBe(2);
    expect(pendingCount(objs, 0.95)).toBe(1);
    expect(isVisible(box("x", "prelabel", 0.3), 0.3)).toBe(true); // at the threshold: shown
  });

  it("takes one threshold per class (a class beyond the list shows everything)", () => {
    const mixed = [box("a", "prelabel", 0.5, 0), box("b", "prelabel", 0.5, 1), box("c", "prelabel", 0.1, 2), box("u", "user", null, 1)];
    expect(visibleObjects(mixed, [0.4, 0.6]).map((o) => o.id)).toEqual(["a", "c", "u"]);
    expect(pendingCount(mixed, [0.6, 0.4]).valueOf()).toBe(2);
    expect(acceptAll(mixed, [0.4, 0.6, 0.2]).map((o) => o.id)).toEqual(["a", "u"]);
  });

  it("accept all keeps the visible pre-labels as the user's and drops the hidden ones", () => {
    const r = acceptAll(objs, 0.3);
    expect(r.map((o) => [o.id, o.source, o.score])).toEqual([["s0", "user", null], ["p0", "user", null], ["p2", "user", null]]);
    expect(toWire(r[1]).score).toBeUndefined();
  });

  it("discard removes every pre-label; accept one accepts only it", () => {
    expect(discardAll(objs).map((o) => o.id)).toEqual(["s0"]);
    const one = acceptOne(objs, "p1");
    expect(one.find((o) => o.id === "p1")!.source).toBe("user");
    expect(one.find((o) => o.id === "p0")!.source).toBe("prelabel");
  });
});

describe("edits turn pre-labels into user objects", () => {
  const p = box("p0", "prelabel", 0.87, 1);
  it("move, resize and class change", () => {
    expect(moveObj([p], "p0", 1, 0, 100, 100)[0]).toMatchObject({ source: "user", score: null, box: [11, 10, 21, 20] });
    expect(resizeObj([p], "p0", p.box, "se", 5, 5, 100, 100)[0]).toMatchObject({ source: "user", box: [10, 10, 25, 25] });
    expect(setLabel([p], "p0", 2)[0]).toMatchObject({ source: "user", label: 2 });
  });

  it("new boxes get fresh u-ids and are clamped", () => {
    const [objs, o] = addBox([box("u3"), box("s0")], [50, 50, -5, 120], 2, 100, 100);
    expect(o.id).toBe("u4");
    expect(o.box).toEqual([0, 50, 50, 100]);
    expect(objs).toHaveLength(3);
    expect(newId([])).toBe("u0");
  });
});

describe("wire form", () => {
  const mask = maskFromRows(["0000", "0110", "0100", "0000"], 5, 6);
  const o: Obj = { id: "u0", label: 1, box: [6, 7, 8, 9], source: "user", score: null, mask };

  it("trims masks and encodes runs; memoised per object", () => {
    const w = toWire(o);
    expect(w.mask).toMatchObject({ x: 6, y: 7, w: 2, h: 2 });
    expect(Array.from(decodeRle(w.mask!.rle, 2, 2))).toEqual([1, 1, 1, 0]);
    expect(toWire(o)).toBe(w);
    expect(w.score).toBeUndefined();
  });

  it("reads what Python sends (DataView runs) and rounds boxes", () => {
    const rle = encodeRle(new Uint8Array([0, 1, 1, 1]));
    const wire: WireObject[] = [
      { id: "p0", label: 0, box: [1.234567, 2, 3, 4], source: "prelabel", score: 0.5, mask: { x: 1, y: 2, w: 2, h: 2, rle: new DataView(rle.buffer) } },
    ];
    const [r] = fromWire(wire);
    expect(r.mask!.data).toEqual(new Uint8Array([0, 1, 1, 1]));
    // an object as received is re-sent as received (no re-encoding; the echo check sees identity)
    expect(toWire(r)).toBe(wire[0]);
    expect(sameAsWire([r], wire)).toBe(true);
    // once edited, boxes go out rounded to 1/100 px
    expect(toWire(setLabel([r], "p0", 1)[0]).box).toEqual([1.23, 2, 3, 4]);
  });

  it("skips malformed objects and reports them", () => {
    const errors: string[] = [];
    const r = fromWire([{ id: "x", label: 0, box: [0, 0, 1] }, { id: "ok", label: 0, box: [0, 0, 1, 1], source: "user" }], (e) => errors.push(e));
    expect(r.map((o) => o.id)).toEqual(["ok"]);
    expect(errors).toHaveLength(1);
  });

  it("recognises the kernel's echo of our own update (new arrays, DataViews)", () => {
    const objs = [o, box("s1")];
    const echo = JSON.parse(JSON.stringify(objs.map(toWire), (k, v) => (k === "rle" ? null : v)));
    const rle = toWire(o).mask!.rle as Uint8Array;
    const copy = new Uint8Array(rle.length + 4);
    copy.set(rle, 4);
    echo[0].mask.rle = new DataView(copy.buffer, 4, rle.length);
    expect(sameAsWire(objs, echo)).toBe(true);
    echo[1].label = 2;
    expect(sameAsWire(objs, echo)).toBe(false);
    echo[1].label = 0;
    (echo[0].mask.rle as DataView).setUint8(0, 99);
    expect(sameAsWire(objs, echo)).toBe(false);
    expect(sameAsWire(objs, echo.slice(1))).toBe(false);
  });
});
