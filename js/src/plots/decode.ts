// Series arrive as float64 little-endian bytes inside the `data` trait (see widgets/plots.py): ipywidgets
// hands nested bytes to the front end as DataView. These helpers turn them into arrays uPlot draws.

/** A float64 series from the bytes of one `data` entry; anything else (missing, malformed) is empty.
 *
 * Reads through a DataView with explicit little-endian order, so neither the buffer's byte offset
 * (ipywidgets may slice one buffer) nor the machine's byte order matters. A trailing partial value
 * (length not a multiple of 8) is ignored. */
export function toFloat64(value: unknown): Float64Array {
  let view: DataView;
  if (value instanceof DataView) view = value;
  else if (value instanceof ArrayBuffer) view = new DataView(value);
  else if (ArrayBuffer.isView(value)) view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  else return new Float64Array(0);
  const n = Math.floor(view.byteLength / 8);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
  return out;
}

/** uPlot marks a gap with null; NaN (Python's "no value") would be drawn as a broken path. */
export function toNullable(values: Float64Array): (number | null)[] {
  const out: (number | null)[] = new Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    out[i] = Number.isFinite(v) ? v : null;
  }
  return out;
}

export type Series = Record<string, Float64Array>;

/** Every entry of a `data` trait decoded. */
export function decodeAll(data: unknown): Series {
  const out: Series = {};
  if (data === null || typeof data !== "object") return out;
  for (const [name, value] of Object.entries(data as Record<string, unknown>)) out[name] = toFloat64(value);
  return out;
}

/** The x column and the y columns cut to their common length (a well-formed group already has it):
 * x as numbers, y with NaN turned into null gaps; a y column that is absent is all gaps. `null` when
 * there is nothing to draw (x absent or empty). */
export function aligned(series: Series, x: string, ys: string[]): [number[], ...(number | null)[][]] | null {
  const xs = series[x];
  if (xs === undefined || xs.length === 0) return null;
  let n = xs.length;
  for (const y of ys) if (series[y] !== undefined) n = Math.min(n, series[y].length);
  if (n === 0) return null;
  const cols = ys.map((y) => (series[y] === undefined ? new Array<null>(n).fill(null) : toNullable(series[y].subarray(0, n))));
  return [Array.from(xs.subarray(0, n)), ...cols];
}
