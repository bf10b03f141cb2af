import { describe, it } from "node:test";
import { expect } from "expect";
import rle from "./fixtures/rle.json";
import {
  decodeRle, emptyMask, encodeRle, fillHole, fillPolygon, growMask, maskFromRows, maskHas, maskToRows, paintDisk,
  paintSegment, tightBox, trimMask,
} from "../src/canvas/mask";

interface Case {
  name: string;
  w: number;
  h: number;
  rows: string[];
  rle_base64: string;
  runs: number[];
}

function b64(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

describe("RLE codec against the shared fixtures (js/test/fixtures/rle.json)", () => {
  const cases = (rle as { cases: Case[] }).cases;
  it("has the fixtures", () => expect(cases.length).toBeGreaterThanOrEqual(8));

  for (const c of cases) {
    it(`encodes "${c.name}" to the Python bytes`, () => {
      const m = maskFromRows(c.rows);
      const bytes = encodeRle(m.data);
      expect(Array.from(bytes)).toEqual(Array.from(b64(c.rle_base64)));
      // the result owns its buffer exactly (ipywidgets sends view.buffer)
      expect(bytes.byteOffset).toBe(0);
      expect(bytes.buffer.byteLength).toBe(bytes.byteLength);
      const runs = Array.from(new Uint32Array(bytes.buffer.slice(0)));
      expect(runs).toEqual(c.runs);
    });

    it(`decodes "${c.name}" from the Python bytes (as a DataView at an offset)`, () => {
      const raw = b64(c.rle_base64);
      const padded = new Uint8Array(raw.length + 7);
      padded.set(raw, 3);
      const data = decodeRle(new DataView(padded.buffer, 3, raw.length), c.w, c.h);
      expect(maskToRows({ x: 0, y: 0, w: c.w, h: c.h, data })).toEqual(c.rows);
    });
  }

  it("refuses runs that do not cover the crop", () => {
    const bytes = encodeRle(new Uint8Array([0, 1, 1, 0]));
    expect(() => decodeRle(bytes, 5, 1)).toThrow(/cover 4 pixels/);
    expect(() => decodeRle(bytes, 1, 3)).toThrow();
    expect(() => decodeRle(new Uint8Array(5), 1, 1)).toThrow(/multiple of 4/);
  });
});

describe("painting", () => {
  it("paints a disk of the right size at pixel centres", () => {
    const m = emptyMask(0, 0, 9, 9);
    const p = paintDisk(m, 4.5, 4.5, 2, 1);
    expect(maskToRows(m)).toEqual([
      "000000000",
      "000000000",
      "000010000",
      "000111000",
      "001111100",
      "000111000",
      "000010000",
      "000000000",
      "000000000",
    ]);
    expect(p.changed).toBe(13);
    // painting again changes nothing
    expect(paintDisk(m, 4.5, 4.5, 2, 1).changed).toBe(0);
  });

  it("a fast stroke between two pointer events leaves no gap", () => {
    const m = emptyMask(0, 0, 40, 5);
    paintSegment(m, 2.5, 2.5, 37.5, 2.5, 1, 1);
    const row = maskToRows(m)[2];
    expect(row.slice(2, 38)).toBe("1".repeat(36));
    // a diagonal: every row between the end points has a pixel
    const d = emptyMask(0, 0, 30, 30);
    paintSegment(d, 1, 1, 29, 28, 0.5, 1);
    maskToRows(d).slice(1, 28).forEach((r) => expect(r).toContain("1"));
  });

  it("a 1 px brush still paints the pixel under the pointer", () => {
    const m = emptyMask(0, 0, 4, 4);
    paintDisk(m, 2.0, 2.0, 0.5, 1); // a pixel corner: no centre within 0.5
    expect(maskHas(m, 2, 2)).toBe(true);
  });

  it("erases", () => {
    const m = maskFromRows(["1111", "1111"]);
    paintSegment(m, 0.5, 0.5, 1.5, 0.5, 0.5, 0);
    expect(maskToRows(m)).toEqual(["0011", "1111"]);
  });

  it("grows the crop to cover what is painted, keeping its pixels, within the image", () => {
    const m = maskFromRows(["11", "11"], 10, 10);
    const g = growMask(m, { x0: 30, y0: 5, x1: 33, y1: 8 }, 40, 40, 2);
    expect(g).not.toBe(m);
    expect([g.x, g.y, g.x + g.w, g.y + g.h]).toEqual([10, 3, 35, 12]);
    expect(maskHas(g, 10, 10) && maskHas(g, 11, 11)).toBe(true);
    expect(maskHas(g, 12, 10)).toBe(false);
    // at the image border the crop stops
    const b = growMask(emptyMask(), { x0: 35, y0: 35, x1: 45, y1: 45 }, 40, 40, 8);
    expect([b.x, b.y, b.x + b.w, b.y + b.h]).toEqual([27, 27, 40, 40]);
    // already covered: the same mask
    expect(growMask(g, { x0: 11, y0: 4, x1: 12, y1: 6 }, 40, 40)).toBe(g);
  });
});

describe("polygon fill (even-odd, pixel centres)", () => {
  it("fills a rectangle exactly", () => {
    const m = emptyMask(0, 0, 6, 5);
    fillPolygon(m, [{ x: 1, y: 1 }, { x: 4, y: 1 }, { x: 4, y: 3 }, { x: 1, y: 3 }], 1);
    expect(maskToRows(m)).toEqual(["000000", "011100", "011100", "000000", "000000"]);
  });

  it("fills a triangle", () => {
    const m = emptyMask(0, 0, 7, 4);
    fillPolygon(m, [{ x: 0, y: 0 }, { x: 7, y: 0 }, { x: 3.5, y: 4 }], 1);
    expect(maskToRows(m)).toEqual(["1111111", "0111110", "0011100", "0001000"]);
  });

  it("leaves the doubly covered part of a self-intersecting outline empty (even-odd)", () => {
    // a square traced twice around a smaller inner square: the ring is filled, the inner square not
    const m = emptyMask(0, 0, 8, 8);
    const outer = [{ x: 0, y: 0 }, { x: 8, y: 0 }, { x: 8, y: 8 }, { x: 0, y: 8 }];
    const inner = [{ x: 2, y: 2 }, { x: 2, y: 6 }, { x: 6, y: 6 }, { x: 6, y: 2 }];
    fillPolygon(m, [...outer, { x: 0, y: 0 }, ...inner, { x: 2, y: 2 }], 1);
    expect(maskToRows(m)).toEqual([
      "11111111", "11111111", "11000011", "11000011", "11000011", "11000011", "11111111", "11111111",
    ]);
  });

  it("is clipped to the crop", () => {
    const m = emptyMask(2, 2, 3, 3);
    fillPolygon(m, [{ x: -10, y: -10 }, { x: 20, y: -10 }, { x: 20, y: 20 }, { x: -10, y: 20 }], 1);
    expect(maskToRows(m)).toEqual(["111", "111", "111"]);
  });
});

describe("hole fill", () => {
  const ring = () => maskFromRows(["11111", "10001", "10101", "10001", "11111"], 10, 20);

  it("fills an enclosed hole (4-connected)", () => {
    const m = ring();
    const r = fillHole(m, 11.5, 21.5);
    expect(r.ok).toBe(true);
    expect(maskToRows(m)).toEqual(["11111", "11111", "11111", "11111", "11111"]);
  });

  it("refuses a region that is not enclosed", () => {
    const m = maskFromRows(["11111", "10001", "10000", "10001", "11111"]);
    const before = maskToRows(m);
    expect(fillHole(m, 1.5, 1.5)).toEqual({ ok: false, reason: "open" });
    expect(maskToRows(m)).toEqual(before);
  });

  it("says why when the click is on the mask or outside the crop", () => {
    expect(fillHole(ring(), 10.2, 20.2)).toEqual({ ok: false, reason: "on-mask" });
    expect(fillHole(ring(), 2, 2)).toEqual({ ok: false, reason: "outside" });
  });

  it("a diagonal gap does not leak (4-connectivity)", () => {
    const m = maskFromRows(["01110", "10001", "10001", "01110"]);
    // corner pixels are open diagonally only: the inside is still enclosed
    expect(fillHole(m, 2.5, 1.5).ok).toBe(true);
  });
});

describe("trim and tight box", () => {
  it("tight box uses pixel edges (as Python's masks_to_boxes)", () => {
    expect(tightBox(maskFromRows(["000", "010", "000"], 5, 7))).toEqual([6, 8, 7, 9]);
    expect(tightBox(maskFromRows(["00", "00"]))).toBeNull();
  });

  it("trims to content, returns the same mask when tight, null when empty", () => {
    const m = maskFromRows(["0000", "0110", "0100", "0000"], 3, 4);
    const t = trimMask(m)!;
    expect([t.x, t.y, t.w, t.h]).toEqual([4, 5, 2, 2]);
    expect(maskToRows(t)).toEqual(["11", "10"]);
    expect(trimMask(t)).toBe(t);
    expect(trimMask(emptyMask(0, 0, 3, 3))).toBeNull();
  });
});
