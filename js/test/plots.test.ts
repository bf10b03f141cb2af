import { describe, it } from "node:test";
import { expect } from "expect";
import { buildSlots, type Live } from "../src/plots/charts";
import { aligned, decodeAll, toFloat64, toNullable } from "../src/plots/decode";
import {
  emptyText,
  formatCount,
  formatShare,
  formatValue,
  lastIndex,
  plateauBands,
  safeRange,
  slotRange,
  splitHeight,
  stack,
} from "../src/plots/shape";

/** float64 little-endian bytes, as widgets/plots.py encode() writes them */
function f64(values: number[], offset = 0): DataView {
  const buf = new ArrayBuffer(offset + values.length * 8 + 3);
  const view = new DataView(buf, offset, values.length * 8);
  values.forEach((v, i) => view.setFloat64(i * 8, v, true));
  return view;
}

const theme = { text: "#000", grid: "#ccc" };
const newLive = (): Live => ({ bands: [], step: 0, raw: [] });

describe("decoding float64 series", () => {
  it("reads little-endian float64 at any byte offset", () => {
    const values = [0, 1.5, -2.25, 1e-300, Number.NaN, 123456.789];
    for (const offset of [0, 1, 3, 8]) {
      const out = toFloat64(f64(values, offset));
      expect(out.length).toBe(values.length);
      expect(Array.from(out.subarray(0, 4))).toEqual(values.slice(0, 4));
      expect(Number.isNaN(out[4])).toBe(true);
      expect(out[5]).toBe(123456.789);
    }
  });

  it("is not fooled by big-endian bytes", () => {
    const view = new DataView(new ArrayBuffer(8));
    view.setFloat64(0, 2.5, false);
    expect(toFloat64(view)[0]).not.toBe(2.5);
  });

  it("accepts ArrayBuffer and Uint8Array, ignores a partial value and rejects anything else", () => {
    const bytes = new Uint8Array(f64([3, 4]).buffer, 0, 16);
    expect(Array.from(toFloat64(bytes))).toEqual([3, 4]);
    expect(Array.from(toFloat64(bytes.slice().buffer))).toEqual([3, 4]);
    expect(toFloat64(new Uint8Array(bytes.buffer, 0, 15)).length).toBe(1);
    for (const bad of [undefined, null, "abc", [1, 2], 5, {}]) expect(toFloat64(bad).length).toBe(0);
  });

  it("turns NaN and infinities into null gaps", () => {
    expect(toNullable(new Float64Array([1, Number.NaN, Infinity, -2]))).toEqual([1, null, null, -2]);
  });

  it("aligns a group to its common length; an absent y column is all gaps; no x means nothing to draw", () => {
    const s = decodeAll({ x: f64([1, 2, 3]), a: f64([5, Number.NaN, 7]), b: f64([1, 2]) });
    expect(aligned(s, "x", ["a", "b"])).toEqual([[1, 2], [5, null], [1, 2]]);
    expect(aligned(s, "x", ["a", "zzz"])).toEqual([[1, 2, 3], [5, null, 7], [null, null, null]]);
    expect(aligned(s, "nope", ["a"])).toBeNull();
    expect(aligned(decodeAll({ x: f64([]) }), "x", [])).toBeNull();
    expect(decodeAll(null)).toEqual({});
  });
});

describe("plateau bands", () => {
  it("keeps well-formed periods, clipped to the visible range, open when not resumed", () => {
    const periods = [
      [10, 50, true],
      [80, 120, false],
      [300, 400, true], // outside
      ["a", 3, true],
      [5],
      null,
    ];
    expect(plateauBands(periods, 20, 200)).toEqual([
      { from: 20, to: 50, open: false },
      { from: 80, to: 120, open: true },
    ]);
    expect(plateauBands("nope", 0, 1)).toEqual([]);
    expect(plateauBands([[1, 2, true]], 5, 1)).toEqual([]);
  });
});

describe("stacking and layout", () => {
  it("stacks columns into running sums; a gap counts 0 unless every column has one", () => {
    expect(
      stack([
        [1, 2, null, 0],
        [3, null, null, 1],
        [0, 1, null, 2],
      ]),
    ).toEqual([
      [1, 2, null, 0],
      [4, 2, null, 1],
      [4, 3, null, 3],
    ]);
    expect(stack([])).toEqual([]);
  });

  it("splits a height by weight into whole pixels that add up", () => {
    expect(splitHeight(300, [1])).toEqual([300]);
    const two = splitHeight(301, [0.55, 0.45]);
    expect(two.reduce((a, b) => a + b)).toBe(301);
    expect(two[0]).toBeGreaterThan(two[1]);
    expect(splitHeight(100, [1, 1], 80)).toEqual([80, 80]); // the minimum wins over the total
    expect(splitHeight(200, [0, Number.NaN])).toEqual([100, 100]);
  });

  it("gives ranges uPlot can draw", () => {
    expect(slotRange(0)).toEqual([0.5, 1.5]);
    expect(slotRange(7)).toEqual([0.5, 7.5]);
    expect(safeRange(3, 3)).toEqual([2, 4]);
    expect(safeRange(null, null)).toEqual([-1, 1]);
    expect(safeRange(1, 5)).toEqual([1, 5]);
    expect(safeRange(Number.NaN, 5)).toEqual([0, 1]);
  });

  it("formats legend values", () => {
    expect(formatCount(3)).toBe("3");
    expect(formatCount(2.25)).toBe("2.3");
    expect(formatCount(null)).toBe("–");
    expect(formatShare(0.4)).toBe("40 %");
    expect(formatValue(0.123456)).toBe("0.1235");
    expect(formatValue(1234.5678)).toBe("1235");
    expect(formatValue(0.00001234)).toBe("1.23e-5");
    expect(formatValue(Number.NaN)).toBe("–");
    expect(lastIndex([[1, null, null], [null, 2, null]])).toBe(1);
    expect(lastIndex([[null]])).toBeNull();
  });

  it("says why a plot is empty, in Python's words when given", () => {
    expect(emptyText("loss", {})).toBe("No training steps yet");
    expect(emptyText("loss", { empty: "No training steps yet · Label 2 more images to start" })).toContain("Label 2");
    expect(emptyText("quality", {})).toContain("pre-labels");
  });
});

describe("what each kind draws", () => {
  it("loss: one chart of step, loss, smoothed; bands reach the current step", () => {
    const live = newLive();
    const data = { step: f64([1, 2, 3, 4]), loss: f64([4, 3, Number.NaN, 1]), smoothed: f64([4, 3.5, 3.5, 2]) };
    const meta = { step: 9, plateaus: [[2, 9, false]], paused: true };
    const [slot, ...rest] = buildSlots("loss", decodeAll(data), meta, theme, live, "s");
    expect(rest).toEqual([]);
    expect(slot.data).toEqual([[1, 2, 3, 4], [4, 3, null, 1], [4, 3.5, 3.5, 2]]);
    expect(live.bands).toEqual([{ from: 2, to: 9, open: true }]);
    expect(live.step).toBe(9);
    const empty = buildSlots("loss", {}, { empty: "No training steps yet" }, theme, newLive(), "s");
    expect(empty[0].data).toBeNull();
    expect(empty[0].empty).toBe("No training steps yet");
  });

  it("sampler: per-sample views and per-batch shares; no batch chart until there are samples", () => {
    const data = decodeAll({
      order: f64([1, 2, 3]),
      seen: f64([9, 5, 2]),
      target: f64([8, 5.5, 2.5]),
      seen_recent: f64([Number.NaN, 5, 2]),
      batch_step: f64([1, 2]),
      recent_share: f64([1, 0.5]),
      recent_avg: f64([1, 0.75]),
      uniform_share: f64([1, 1]),
    });
    const [views, share] = buildSlots("sampler", data, { recent: 2, window: 20 }, theme, newLive(), "s");
    expect(views.data).toEqual([[1, 2, 3], [9, 5, 2], [null, 5, 2], [8, 5.5, 2.5]]);
    expect(share.data).toEqual([[1, 2], [1, 0.5], [1, 0.75], [1, 1]]);
    expect(share.subtitle).toContain("2 newest");
    const none = buildSlots("sampler", {}, {}, theme, newLive(), "s");
    expect(none[0].data).toBeNull();
    expect(none[1].data).toBeNull();
    expect(none[1].empty).toBe(""); // one message is enough
  });

  it("quality (detection): score chart plus bars stacked correct→extra, drawn tallest first", () => {
    const live = newLive();
    const cats = [["correct", "correct"], ["imprecise", "imprecise"], ["wrong_class", "wrong class"],
      ["missed", "missed"], ["extra", "extra"]];
    const data = decodeAll({
      order: f64([1, 2]), score: f64([0.2, 0.8]), ema: f64([0.2, 0.26]), step: f64([10, 20]),
      correct: f64([1, 4]), imprecise: f64([2, 0]), wrong_class: f64([0, 1]), missed: f64([3, 0]), extra: f64([1, 2]),
    });
    const [scores, bars] = buildSlots("quality", data, { task: "detection", categories: cats }, theme, live, "s");
    expect(scores.data).toEqual([[1, 2], [0.2, 0.8], [0.2, 0.26]]);
    // series order: extra (top of the stack, = total), missed, wrong class, imprecise, correct
    expect(bars.data).toEqual([[1, 2], [7, 7], [6, 5], [3, 5], [3, 4], [1, 4]]);
    expect(live.raw).toEqual([[1, 2], [3, 0], [0, 1], [2, 0], [1, 4]]);
  });

  it("quality (classification, segmentation): one chart with the task's series", () => {
    const cls = decodeAll({ order: f64([1, 2]), top1: f64([0, 1]), topk_avg: f64([1, 1]), ema: f64([0, 0.1]) });
    const c = buildSlots("quality", cls, { task: "classification", top_k: 3 }, theme, newLive(), "s");
    expect(c).toHaveLength(1);
    expect(c[0].data).toEqual([[1, 2], [0, 1], [1, 1], [0, 0.1]]);
    const seg = decodeAll({ order: f64([1]), mean_iou: f64([0.5]), semantic_miou: f64([0.7]), ema: f64([0.5]) });
    const s = buildSlots("quality", seg, { task: "segmentation" }, theme, newLive(), "s");
    expect(s).toHaveLength(1);
    expect(s[0].data).toEqual([[1], [0.5], [0.7], [0.5]]);
    expect(s[0].key).not.toBe(c[0].key); // switching task rebuilds the chart
  });
});
