// Pure data shaping for the live plots: no DOM, no uPlot, so the unit tests run it in Node.

/** A stretch of training steps to shade: where the loss stopped improving (`from`) up to the step at
 * which the plateau detector paused training (`to`). `open`: training is still paused there. */
export interface Band {
  from: number;
  to: number;
  open: boolean;
}

/** Plateau periods from `meta.plateaus` (`[[start, end, resumed], ...]`, see widgets/plots.py),
 * validated (anything malformed is dropped) and clipped to the visible range `[min, max]`. */
export function plateauBands(periods: unknown, min: number, max: number): Band[] {
  if (!Array.isArray(periods) || !(min <= max)) return [];
  const out: Band[] = [];
  for (const p of periods) {
    if (!Array.isArray(p) || p.length < 2) continue;
    const [start, end, resumed] = p as unknown[];
    if (typeof start !== "number" || typeof end !== "number" || !Number.isFinite(start) || !Number.isFinite(end))
      continue;
    const from = Math.max(min, Math.min(start, end));
    const to = Math.min(max, Math.max(start, end));
    if (to < from) continue; // entirely outside the visible range
    out.push({ from, to, open: resumed === false });
  }
  return out;
}

/** Running sums for stacked bars: `out[i][j] = cols[0][j] + ... + cols[i][j]`. A gap counts as 0,
 * except where every column has a gap (nothing to stack: the result stays a gap). */
export function stack(cols: (number | null)[][]): (number | null)[][] {
  const n = cols.length ? Math.min(...cols.map((c) => c.length)) : 0;
  const sums = new Array<number>(n).fill(0);
  const any = new Array<boolean>(n).fill(false);
  const out: (number | null)[][] = [];
  for (const col of cols) {
    const row: (number | null)[] = new Array(n);
    for (let j = 0; j < n; j++) {
      const v = col[j];
      if (v !== null && Number.isFinite(v)) {
        sums[j] += v;
        any[j] = true;
      }
      row[j] = sums[j];
    }
    out.push(row);
  }
  // a column with nothing at j anywhere is a gap in every running sum
  for (const row of out) for (let j = 0; j < n; j++) if (!any[j]) row[j] = null;
  return out;
}

/** The height of each of a widget's charts: `total` split by `weights`, rounded to whole pixels that
 * add up to `total`, each at least `min`. */
export function splitHeight(total: number, weights: number[], min = 80): number[] {
  if (weights.length === 0) return [];
  const ws = weights.map((w) => (Number.isFinite(w) && w > 0 ? w : 0));
  const sum = ws.reduce((a, b) => a + b, 0);
  const shares = sum > 0 ? ws.map((w) => w / sum) : ws.map(() => 1 / ws.length);
  const out = shares.map((s) => Math.max(min, Math.floor(total * s)));
  const spare = total - out.reduce((a, b) => a + b, 0);
  if (spare > 0) out[out.length - 1] += spare;
  return out;
}

/** The x range for one bar (or point) per position 1, 2, ..., `last`: half a slot of margin each side. */
export function slotRange(last: number): [number, number] {
  return [0.5, Math.max(1, last) + 0.5];
}

/** A range uPlot can draw: widened around a single value, and never reversed. */
export function safeRange(min: number | null, max: number | null, pad = 1): [number, number] {
  const lo = min ?? 0;
  const hi = max ?? lo;
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [0, 1];
  if (hi > lo) return [lo, hi];
  return [lo - pad, lo + pad];
}

/** A count for a legend: whole numbers as such, bucket means (see widgets/plots.py) with one decimal. */
export function formatCount(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}

/** A share in [0, 1] as a percentage. */
export function formatShare(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  return `${Math.round(v * 100)} %`;
}

/** A loss or score with about four significant digits. */
export function formatValue(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-3 || a >= 1e5)) return v.toExponential(2);
  return String(Number(v.toPrecision(4)));
}

/** The last index of `ys` (any column) with a value, for showing the newest values in the legend. */
export function lastIndex(ys: (number | null)[][]): number | null {
  let best: number | null = null;
  for (const col of ys)
    for (let j = col.length - 1; j >= 0; j--)
      if (col[j] !== null) {
        if (best === null || j > best) best = j;
        break;
      }
  return best;
}

/** What an empty plot says: Python's words when it gave some, else a default per kind. */
export function emptyText(kind: string, meta: Record<string, unknown>, fallback?: string): string {
  const given = meta.empty;
  if (typeof given === "string" && given) return given;
  if (fallback) return fallback;
  if (kind === "sampler") return "No labeled samples yet";
  if (kind === "quality") return "No pre-labels judged yet";
  return "No training steps yet";
}
