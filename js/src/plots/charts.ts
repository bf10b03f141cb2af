// What each kind of plot draws: uPlot options and aligned data built from the decoded traits.
//
// A kind yields one or two chart "slots" (stacked vertically). Options are built only when a slot's
// `key` changes (the kind, the task, a label baked into the options); every other update is a
// `setData` on the existing chart. Hooks and legend formatters read `Live`, which is refreshed before
// each `setData`, so plateau bands and raw counts follow the data without rebuilding the chart.

import uPlot from "uplot";
import { aligned, type Series } from "./decode";
import {
  type Band,
  emptyText,
  formatCount,
  formatShare,
  formatValue,
  plateauBands,
  safeRange,
  slotRange,
  stack,
} from "./shape";

export type Meta = Record<string, unknown>;
type Data = [number[], ...(number | null)[][]];

/** Colours taken from the page (JupyterLab's theme); one object per view, updated before each draw. */
export interface Theme {
  text: string;
  grid: string;
}

/** Mutable state read by hooks and legend formatters of the current charts. */
export interface Live {
  bands: Band[];
  /** last step trained: the loss chart's x axis reaches it even while no new step was plotted */
  step: number;
  /** raw (unstacked) columns of the detection breakdown, in series order, for the legend */
  raw: (number | null)[][];
}

export interface SlotSpec {
  /** a different key re-creates the chart; the same key only gets `setData` */
  key: string;
  subtitle: string;
  /** shown instead of the chart when `data` is null */
  empty: string;
  data: Data | null;
  weight: number;
  options: (width: number, height: number) => uPlot.Options;
}

// matplotlib's tab10, as the labeling canvas
const BLUE = "#1f77b4";
const ORANGE = "#ff7f0e";
const GREEN = "#2ca02c";
const RED = "#d62728";
const PURPLE = "#9467bd";
const OLIVE = "#bcbd22";
const GREY = "#7f7f7f";
const BAND_FILL = "rgba(255, 127, 14, 0.13)";
const PAUSE_LINE = "rgba(255, 127, 14, 0.9)";
/** the y axes of stacked charts share one width, so their plot areas line up */
const Y_AXIS_SIZE = 58;

const num = (meta: Meta, key: string, fallback: number): number => {
  const v = meta[key];
  return typeof v === "number" && Number.isFinite(v) ? v : fallback;
};

/** Integer-only tick spacing for axes that count (steps, samples, images, views). */
const INT_INCRS = [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000,
  500000, 1000000];

/** An x axis of whole numbers (all of them count something) and a y axis of fixed width. */
function axes(theme: Theme, xLabel: string, yLabel: string, y: Partial<uPlot.Axis> = {}): uPlot.Axis[] {
  // read at every draw, so a theme switch (light / dark) shows at the next update
  const common = {
    stroke: () => theme.text,
    grid: { stroke: () => theme.grid, width: 1 },
    ticks: { stroke: () => theme.grid, width: 1 },
  };
  return [
    { ...common, label: xLabel, labelSize: 18, incrs: INT_INCRS },
    { ...common, label: yLabel, labelSize: 18, size: Y_AXIS_SIZE, ...y },
  ];
}

function base(width: number, height: number, theme: Theme, sync?: string): uPlot.Options {
  return {
    width,
    height,
    series: [],
    legend: { live: true },
    // live data resets the scales at every update, so drag-to-zoom would be undone within 250 ms
    cursor: { drag: { x: false, y: false, setScale: false }, ...(sync ? { sync: { key: sync } } : {}) },
    scales: { x: { time: false } },
    axes: axes(theme, "", ""),
  };
}

const points = (color: string, size = 5): Partial<uPlot.Series> => ({
  stroke: color,
  fill: color,
  paths: () => null,
  points: { show: true, size, space: 0, stroke: color, fill: color, width: 1 },
});

// uPlot's default: dots on the line only while points are far apart (a lone first step stays visible)
const line = (color: string, width = 2, dash?: number[]): Partial<uPlot.Series> => ({
  stroke: color,
  width,
  ...(dash ? { dash } : {}),
  points: { size: 5, fill: color },
});

/** Draws the plateau bands under everything else (uPlot's drawClear hook runs before axes and series). */
function drawBands(u: uPlot, bands: Band[]): void {
  if (!bands.length) return;
  const { ctx, bbox } = u;
  const right = bbox.left + bbox.width;
  const px = uPlot.pxRatio;
  ctx.save();
  for (const b of bands) {
    const x0 = Math.max(bbox.left, u.valToPos(b.from, "x", true));
    const x1 = Math.min(right, u.valToPos(b.to, "x", true));
    if (!(x1 >= x0)) continue;
    ctx.fillStyle = BAND_FILL;
    ctx.fillRect(x0, bbox.top, Math.max(x1 - x0, px), bbox.height);
    // the step at which training paused
    ctx.strokeStyle = PAUSE_LINE;
    ctx.lineWidth = px * (b.open ? 2 : 1);
    ctx.setLineDash([4 * px, 3 * px]);
    ctx.beginPath();
    ctx.moveTo(x1, bbox.top);
    ctx.lineTo(x1, bbox.top + bbox.height);
    ctx.stroke();
  }
  ctx.restore();
}

// ------------------------------------------------------------------------------------------ loss
function lossSlots(series: Series, meta: Meta, theme: Theme, live: Live): SlotSpec[] {
  const data = aligned(series, "step", ["loss", "smoothed"]);
  live.step = num(meta, "step", 0);
  live.bands = data ? plateauBands(meta.plateaus, data[0][0], Math.max(data[0][data[0].length - 1], live.step)) : [];
  return [
    {
      key: "loss",
      subtitle: "",
      empty: emptyText("loss", meta),
      data,
      weight: 1,
      options: (width, height) => ({
        ...base(width, height, theme),
        scales: {
          x: { time: false, range: (_u, min, max) => safeRange(min, Math.max(max ?? 0, live.step)) },
        },
        series: [
          { label: "step", value: (_u, v) => (v == null ? "–" : String(Math.round(v))) },
          { label: "loss per step", ...line("rgba(31, 119, 180, 0.35)", 1), value: (_u, v) => formatValue(v) },
          { label: "moving average", ...line(BLUE, 2), value: (_u, v) => formatValue(v) },
        ],
        axes: axes(theme, "training step", "loss", { values: (_u, ticks) => ticks.map((t) => formatValue(t)) }),
        hooks: { drawClear: [(u: uPlot) => drawBands(u, live.bands)] },
      }),
    },
  ];
}

// --------------------------------------------------------------------------------------- sampler
function samplerSlots(series: Series, meta: Meta, theme: Theme): SlotSpec[] {
  const recent = num(meta, "recent", 5);
  const window = num(meta, "window", 20);
  const samples = aligned(series, "order", ["seen", "seen_recent", "target"]);
  const batches = aligned(series, "batch_step", ["recent_share", "recent_avg", "uniform_share"]);
  const views: SlotSpec = {
    key: `sampler-views:${recent}`,
    subtitle: "Times each labeled sample was trained on",
    empty: emptyText("sampler", meta),
    data: samples,
    weight: 0.55,
    options: (width, height) => ({
      ...base(width, height, theme),
      scales: { x: { time: false, range: (_u, _min, max) => slotRange(max ?? 1) }, y: { range: (_u, _min, max) => [0, Math.max(1, max ?? 1)] } },
      series: [
        { label: "sample", value: (_u, v) => (v == null ? "–" : `#${Math.round(v)}`) },
        { label: "trained on", ...points(BLUE, 5), value: (_u, v) => formatCount(v) },
        { label: `${recent} newest`, ...points(ORANGE, 7), value: (_u, v) => formatCount(v) },
        { label: "target", ...line(GREY, 1.5, [6, 4]), value: (_u, v) => (v == null ? "–" : v.toFixed(1)) },
      ],
      axes: axes(theme, "sample, in the order labeled", "times trained", { incrs: INT_INCRS }),
    }),
  };
  const share: SlotSpec = {
    key: `sampler-share:${recent}:${window}`,
    subtitle: `Share of each batch from the ${recent} newest samples`,
    empty: samples ? emptyText("sampler", {}, String(meta.empty_batches ?? "No training steps yet")) : "",
    data: samples ? batches : null,
    weight: 0.45,
    options: (width, height) => ({
      ...base(width, height, theme),
      scales: { x: { time: false, range: (_u, min, max) => safeRange(min, max) }, y: { range: () => [0, 1] } },
      series: [
        { label: "step", value: (_u, v) => (v == null ? "–" : String(Math.round(v))) },
        { label: "this batch", ...points("rgba(255, 127, 14, 0.35)", 4), value: (_u, v) => formatShare(v) },
        { label: `last ${window} batches`, ...line(ORANGE, 2), value: (_u, v) => formatShare(v) },
        { label: "if uniform", ...line(GREY, 1.5, [6, 4]), value: (_u, v) => formatShare(v) },
      ],
      axes: axes(theme, "training step", "share", {
        splits: () => [0, 0.5, 1],
        values: (_u, ticks) => ticks.map((t) => formatShare(t)),
      }),
    }),
  };
  return [views, share];
}

// --------------------------------------------------------------------------------------- quality
const CATEGORY_COLORS: Record<string, string> = {
  correct: GREEN,
  imprecise: OLIVE,
  wrong_class: ORANGE,
  missed: RED,
  extra: PURPLE,
};

function qualitySlots(series: Series, meta: Meta, theme: Theme, live: Live, sync: string): SlotSpec[] {
  const task = typeof meta.task === "string" ? meta.task : "detection";
  const scoreName = typeof meta.score_name === "string" ? meta.score_name : "score";
  const ys: [string, string, Partial<uPlot.Series>][] =
    task === "segmentation"
      ? [
          ["mean_iou", "mean IoU", points(BLUE, 5)],
          ["semantic_miou", "semantic mIoU", points(PURPLE, 5)],
          ["ema", `moving average (${scoreName})`, line(GREEN, 2)],
        ]
      : task === "classification"
        ? [
            ["top1", "top-1 hit", points(BLUE, 5)],
            ["topk_avg", `top-${num(meta, "top_k", 3)}, last ${num(meta, "window", 10)}`, line(PURPLE, 1.5, [6, 4])],
            ["ema", "moving average (top-1)", line(GREEN, 2)],
          ]
        : [
            ["score", scoreName, points(BLUE, 5)],
            ["ema", "moving average", line(GREEN, 2)],
          ];
  const scores = aligned(
    series,
    "order",
    ys.map((y) => y[0]),
  );
  const xSeries: uPlot.Series = { label: "image", value: (_u, v) => (v == null ? "–" : `#${Math.round(v)}`) };
  const slots: SlotSpec[] = [
    {
      key: `quality:${task}:${ys.map((y) => y[1]).join("|")}`,
      subtitle: task === "detection" ? "Score of each pre-label (1 = nothing to fix)" : "",
      empty: emptyText("quality", meta),
      data: scores,
      weight: task === "detection" ? 0.55 : 1,
      options: (width, height) => ({
        ...base(width, height, theme, sync),
        scales: {
          x: { time: false, range: (_u, _min, max) => slotRange(max ?? 1) },
          y: { range: (_u, min) => [Math.min(0, min ?? 0), 1] },
        },
        series: [xSeries, ...ys.map(([, label, style]) => ({ label, ...style, value: (_u: uPlot, v: number | null) => formatValue(v) }))],
        axes: axes(theme, "image, in the order judged", scoreName),
      }),
    },
  ];
  if (task !== "detection") return slots;

  const cats = Array.isArray(meta.categories)
    ? (meta.categories as unknown[]).filter(
        (c): c is [string, string] => Array.isArray(c) && typeof c[0] === "string" && typeof c[1] === "string",
      )
    : [];
  const counts = aligned(
    series,
    "order",
    cats.map((c) => c[0]),
  );
  // Stacked bottom (first category) to top; drawn top first so each shorter stack paints over the taller.
  const stacked = counts ? stack(counts.slice(1) as (number | null)[][]) : [];
  const order = cats.map((_, i) => cats.length - 1 - i);
  live.raw = counts ? order.map((i) => counts[i + 1] as (number | null)[]) : [];
  const bars = uPlot.paths.bars!({ size: [0.8, 48], gap: 1 });
  slots.push({
    key: `breakdown:${cats.map((c) => c[0]).join("|")}`,
    subtitle: "What each pre-label needed (objects per image)",
    empty: "",
    data: counts ? [counts[0], ...order.map((i) => stacked[i])] : null,
    weight: 0.45,
    options: (width, height) => ({
      ...base(width, height, theme, sync),
      scales: { x: { time: false, range: (_u, _min, max) => slotRange(max ?? 1) }, y: { range: (_u, _min, max) => [0, Math.max(1, max ?? 1)] } },
      series: [
        xSeries,
        ...order.map((i, si) => ({
          label: cats[i][1],
          stroke: CATEGORY_COLORS[cats[i][0]] ?? GREY,
          fill: CATEGORY_COLORS[cats[i][0]] ?? GREY,
          width: 0,
          paths: bars,
          points: { show: false },
          value: (_u: uPlot, _v: number | null, _s: number, idx: number | null) =>
            idx == null ? "–" : formatCount(live.raw[si]?.[idx]),
        })),
      ],
      axes: axes(theme, "image, in the order judged", "objects", { incrs: INT_INCRS }),
    }),
  });
  return slots;
}

/** The chart slots of one kind for the current traits. */
export function buildSlots(kind: string, series: Series, meta: Meta, theme: Theme, live: Live, sync: string): SlotSpec[] {
  if (kind === "sampler") return samplerSlots(series, meta, theme);
  if (kind === "quality") return qualitySlots(series, meta, theme, live, sync);
  return lossSlots(series, meta, theme, live);
}
