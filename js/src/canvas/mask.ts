// Binary masks cropped to where they have pixels, and the pixel operations the mask tools need.
// Pure functions over typed arrays (no DOM), so node tests cover them.
//
// A Mask is a crop (x, y, w, h) of the original image with one byte per pixel (0 or 1), row-major.
// Masks are shared between the undo history and the live state, so they are treated as immutable:
// an edit works on a copy (cloneMask / growMask) made when the edit starts, and mutates only that.

import type { Box } from "./geometry";

export interface Mask {
  readonly x: number;
  readonly y: number;
  readonly w: number;
  readonly h: number;
  readonly data: Uint8Array;
}

/** Image pixels x0 ≤ x < x1, y0 ≤ y < y1. */
export interface Rect {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export type Bytes = DataView | ArrayBuffer | Uint8Array;

/** The bytes of whatever ipywidgets / the platform hands us, as a Uint8Array (no copy). */
export function asUint8(b: Bytes): Uint8Array {
  if (b instanceof Uint8Array) return b;
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

// ------------------------------------------------------------------------------------------- RLE
/** Run lengths (uint32 LE, row-major, background first: the format of protocol.ts WireMask).
 *
 * The result owns its whole ArrayBuffer: ipywidgets sends `view.buffer` of a typed array, so a view
 * into a larger buffer would ship the larger buffer. */
export function encodeRle(data: Uint8Array): Uint8Array {
  const n = data.length;
  if (n === 0) return new Uint8Array(0);
  const runs: number[] = [];
  let cur = 0; // background first
  let len = 0;
  for (let i = 0; i < n; i++) {
    const v = data[i] ? 1 : 0;
    if (v === cur) {
      len++;
    } else {
      runs.push(len);
      cur = v;
      len = 1;
    }
  }
  runs.push(len);
  const out = new Uint8Array(runs.length * 4);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < runs.length; i++) dv.setUint32(i * 4, runs[i], true);
  return out;
}

/** Inverse of encodeRle; throws when the runs do not cover exactly w × h pixels. */
export function decodeRle(rle: Bytes, w: number, h: number): Uint8Array {
  const bytes = asUint8(rle);
  if (bytes.length % 4) throw new Error(`mask runs: ${bytes.length} bytes is not a multiple of 4`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint8Array(w * h);
  let pos = 0;
  for (let i = 0; i < bytes.length / 4; i++) {
    const run = dv.getUint32(i * 4, true);
    if (pos + run > out.length) throw new Error(`mask runs cover more than the ${w}x${h} crop`);
    if (i & 1) out.fill(1, pos, pos + run);
    pos += run;
  }
  if (pos !== out.length) throw new Error(`mask runs cover ${pos} pixels, the ${w}x${h} crop has ${w * h}`);
  return out;
}

// --------------------------------------------------------------------------------- crop handling
export function emptyMask(x = 0, y = 0, w = 0, h = 0): Mask {
  return { x, y, w, h, data: new Uint8Array(w * h) };
}

export function cloneMask(m: Mask): Mask {
  return { x: m.x, y: m.y, w: m.w, h: m.h, data: m.data.slice() };
}

/** `m` itself if its crop already covers `r`, else a larger copy covering `r` plus `pad` pixels
 * (clamped to the W × H image). The padding makes a brush stroke reallocate a few times, not at
 * every pointer event. */
export function growMask(m: Mask, r: Rect, W: number, H: number, pad = 32): Mask {
  const need = clipRect(r, W, H);
  if (!need) return m;
  if (m.w > 0 && need.x0 >= m.x && need.y0 >= m.y && need.x1 <= m.x + m.w && need.y1 <= m.y + m.h) return m;
  const has = m.w > 0 && m.h > 0;
  const x0 = Math.max(0, Math.min(need.x0 - pad, has ? m.x : Infinity));
  const y0 = Math.max(0, Math.min(need.y0 - pad, has ? m.y : Infinity));
  const x1 = Math.min(W, Math.max(need.x1 + pad, has ? m.x + m.w : -Infinity));
  const y1 = Math.min(H, Math.max(need.y1 + pad, has ? m.y + m.h : -Infinity));
  const out = emptyMask(x0, y0, x1 - x0, y1 - y0);
  for (let j = 0; j < m.h; j++) {
    const src = m.data.subarray(j * m.w, (j + 1) * m.w);
    out.data.set(src, (m.y + j - y0) * out.w + (m.x - x0));
  }
  return out;
}

export function clipRect(r: Rect, W: number, H: number): Rect | null {
  const x0 = Math.max(0, Math.floor(r.x0));
  const y0 = Math.max(0, Math.floor(r.y0));
  const x1 = Math.min(W, Math.ceil(r.x1));
  const y1 = Math.min(H, Math.ceil(r.y1));
  return x1 > x0 && y1 > y0 ? { x0, y0, x1, y1 } : null;
}

export function unionRect(a: Rect | null, b: Rect | null): Rect | null {
  if (!a) return b;
  if (!b) return a;
  return { x0: Math.min(a.x0, b.x0), y0: Math.min(a.y0, b.y0), x1: Math.max(a.x1, b.x1), y1: Math.max(a.y1, b.y1) };
}

function maskRect(m: Mask): Rect {
  return { x0: m.x, y0: m.y, x1: m.x + m.w, y1: m.y + m.h };
}

function intersect(a: Rect, b: Rect): Rect | null {
  const x0 = Math.max(a.x0, b.x0);
  const y0 = Math.max(a.y0, b.y0);
  const x1 = Math.min(a.x1, b.x1);
  const y1 = Math.min(a.y1, b.y1);
  return x1 > x0 && y1 > y0 ? { x0, y0, x1, y1 } : null;
}

/** Tight box of the pixels (pixel edges, so one pixel is 1 wide, as Python's masks_to_boxes). */
export function tightBox(m: Mask): Box | null {
  let x0 = Infinity;
  let y0 = Infinity;
  let x1 = -1;
  let y1 = -1;
  for (let j = 0; j < m.h; j++) {
    const row = j * m.w;
    let first = -1;
    let last = -1;
    for (let i = 0; i < m.w; i++) {
      if (m.data[row + i]) {
        if (first < 0) first = i;
        last = i;
      }
    }
    if (first < 0) continue;
    if (y0 === Infinity) y0 = j;
    y1 = j;
    if (first < x0) x0 = first;
    if (last > x1) x1 = last;
  }
  if (x1 < 0) return null;
  return [m.x + x0, m.y + y0, m.x + x1 + 1, m.y + y1 + 1];
}

/** The mask cut to its tight box (the same object when already tight); null when empty. */
export function trimMask(m: Mask): Mask | null {
  const b = tightBox(m);
  if (!b) return null;
  const [x0, y0, x1, y1] = b;
  if (x0 === m.x && y0 === m.y && x1 === m.x + m.w && y1 === m.y + m.h) return m;
  const out = emptyMask(x0, y0, x1 - x0, y1 - y0);
  for (let j = 0; j < out.h; j++) {
    const s = (y0 - m.y + j) * m.w + (x0 - m.x);
    out.data.set(m.data.subarray(s, s + out.w), j * out.w);
  }
  return out;
}

export function countPixels(m: Mask): number {
  let n = 0;
  for (let i = 0; i < m.data.length; i++) n += m.data[i];
  return n;
}

/** Whether the pixel containing image point (x, y) is set, or any pixel whose centre lies within
 * `radius` of it (a tolerance for clicking thin masks). */
export function maskHas(m: Mask, x: number, y: number, radius = 0): boolean {
  const r = Math.ceil(radius);
  const cx = Math.floor(x);
  const cy = Math.floor(y);
  for (let j = cy - r; j <= cy + r; j++) {
    const mj = j - m.y;
    if (mj < 0 || mj >= m.h) continue;
    for (let i = cx - r; i <= cx + r; i++) {
      const mi = i - m.x;
      if (mi < 0 || mi >= m.w || !m.data[mj * m.w + mi]) continue;
      const dx = i + 0.5 - x;
      const dy = j + 0.5 - y;
      if ((i === cx && j === cy) || dx * dx + dy * dy <= radius * radius) return true;
    }
  }
  return false;
}

/** The pixels set in both (image rect), e.g. to erase one class where another was painted. */
export function copyMask(dst: Mask, src: Mask, value: 0 | 1 = 1): void {
  const r = intersect(maskRect(dst), maskRect(src));
  if (!r) return;
  for (let y = r.y0; y < r.y1; y++) {
    for (let x = r.x0; x < r.x1; x++) {
      if (src.data[(y - src.y) * src.w + (x - src.x)]) dst.data[(y - dst.y) * dst.w + (x - dst.x)] = value;
    }
  }
}

// -------------------------------------------------------------------------------------- painting
/** The result of painting: the image rect that may have changed and how many pixels did. */
export interface Painted {
  rect: Rect | null;
  changed: number;
}

/** Bounding rect (image px) of a brush segment of radius r. */
export function segmentRect(x0: number, y0: number, x1: number, y1: number, r: number): Rect {
  return { x0: Math.min(x0, x1) - r - 1, y0: Math.min(y0, y1) - r - 1, x1: Math.max(x0, x1) + r + 1, y1: Math.max(y0, y1) + r + 1 };
}

/** Set (value 1) or clear (value 0) every pixel of `m` whose centre lies within r of the segment
 * (x0, y0)–(x1, y1): a capsule, so a fast stroke between two pointer events has no gaps. The pixels
 * containing the end points are always included, so a 1 px brush still paints. Mutates m.data. */
export function paintSegment(m: Mask, x0: number, y0: number, x1: number, y1: number, r: number, value: 0 | 1): Painted {
  const sr = segmentRect(x0, y0, x1, y1, r);
  const rr = intersect(maskRect(m), { x0: Math.floor(sr.x0), y0: Math.floor(sr.y0), x1: Math.ceil(sr.x1), y1: Math.ceil(sr.y1) });
  if (!rr) return { rect: null, changed: 0 };
  const dx = x1 - x0;
  const dy = y1 - y0;
  const len2 = dx * dx + dy * dy;
  const r2 = r * r;
  let changed = 0;
  const set = (i: number) => {
    if (m.data[i] !== value) {
      m.data[i] = value;
      changed++;
    }
  };
  for (let y = rr.y0; y < rr.y1; y++) {
    const py = y + 0.5;
    for (let x = rr.x0; x < rr.x1; x++) {
      const px = x + 0.5;
      let t = len2 > 0 ? ((px - x0) * dx + (py - y0) * dy) / len2 : 0;
      t = t < 0 ? 0 : t > 1 ? 1 : t;
      const ex = px - (x0 + t * dx);
      const ey = py - (y0 + t * dy);
      if (ex * ex + ey * ey <= r2) set((y - m.y) * m.w + (x - m.x));
    }
  }
  for (const [px, py] of [[x0, y0], [x1, y1]]) {
    const x = Math.floor(px);
    const y = Math.floor(py);
    if (x >= m.x && x < m.x + m.w && y >= m.y && y < m.y + m.h) set((y - m.y) * m.w + (x - m.x));
  }
  return { rect: rr, changed };
}

export function paintDisk(m: Mask, cx: number, cy: number, r: number, value: 0 | 1): Painted {
  return paintSegment(m, cx, cy, cx, cy, r, value);
}

/** Bounding rect of polygon vertices. */
export function polygonRect(pts: readonly { x: number; y: number }[]): Rect {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const p of pts) {
    x0 = Math.min(x0, p.x);
    y0 = Math.min(y0, p.y);
    x1 = Math.max(x1, p.x);
    y1 = Math.max(y1, p.y);
  }
  return { x0: Math.floor(x0), y0: Math.floor(y0), x1: Math.ceil(x1), y1: Math.ceil(y1) };
}

/** Scanline fill of a polygon (image px vertices) with the EVEN-ODD rule, sampling pixel centres:
 * a self-intersecting outline leaves its doubly covered parts empty, as SVG's evenodd does. */
export function fillPolygon(m: Mask, pts: readonly { x: number; y: number }[], value: 0 | 1): Painted {
  if (pts.length < 3) return { rect: null, changed: 0 };
  const rr = intersect(maskRect(m), polygonRect(pts));
  if (!rr) return { rect: null, changed: 0 };
  let changed = 0;
  const xs: number[] = [];
  for (let y = rr.y0; y < rr.y1; y++) {
    const py = y + 0.5;
    xs.length = 0;
    for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
      const a = pts[j];
      const b = pts[i];
      // half-open in y, so a vertex exactly on the scanline is counted once
      if ((a.y <= py && b.y > py) || (b.y <= py && a.y > py)) {
        xs.push(a.x + ((py - a.y) * (b.x - a.x)) / (b.y - a.y));
      }
    }
    xs.sort((p, q) => p - q);
    for (let k = 0; k + 1 < xs.length; k += 2) {
      // pixels whose centre lies in [xs[k], xs[k+1])
      const from = Math.max(rr.x0, Math.ceil(xs[k] - 0.5));
      const to = Math.min(rr.x1, Math.ceil(xs[k + 1] - 0.5));
      const row = (y - m.y) * m.w - m.x;
      for (let x = from; x < to; x++) {
        if (m.data[row + x] !== value) {
          m.data[row + x] = value;
          changed++;
        }
      }
    }
  }
  return { rect: rr, changed };
}

export type HoleResult = { ok: true; painted: Painted } | { ok: false; reason: "outside" | "on-mask" | "open" };

/** Fill the hole of `m` containing image point (x, y): the 4-connected background region around it,
 * if the mask encloses it. A region that reaches the crop's border is open (it connects to the
 * outside), and nothing changes. Mutates m.data only on success. */
export function fillHole(m: Mask, x: number, y: number): HoleResult {
  const cx = Math.floor(x) - m.x;
  const cy = Math.floor(y) - m.y;
  if (cx < 0 || cy < 0 || cx >= m.w || cy >= m.h) return { ok: false, reason: "outside" };
  const start = cy * m.w + cx;
  if (m.data[start]) return { ok: false, reason: "on-mask" };
  const seen = new Uint8Array(m.w * m.h);
  const stack = [start];
  const region: number[] = [];
  seen[start] = 1;
  while (stack.length) {
    const i = stack.pop()!;
    region.push(i);
    const px = i % m.w;
    const py = (i - px) / m.w;
    if (px === 0 || py === 0 || px === m.w - 1 || py === m.h - 1) return { ok: false, reason: "open" };
    for (const n of [i - 1, i + 1, i - m.w, i + m.w]) {
      if (!seen[n] && !m.data[n]) {
        seen[n] = 1;
        stack.push(n);
      }
    }
  }
  let x0 = Infinity, y0 = Infinity, x1 = -1, y1 = -1;
  for (const i of region) {
    m.data[i] = 1;
    const px = i % m.w;
    const py = (i - px) / m.w;
    x0 = Math.min(x0, px);
    x1 = Math.max(x1, px);
    y0 = Math.min(y0, py);
    y1 = Math.max(y1, py);
  }
  return { ok: true, painted: { rect: { x0: m.x + x0, y0: m.y + y0, x1: m.x + x1 + 1, y1: m.y + y1 + 1 }, changed: region.length } };
}

/** A mask from full rows of "0"/"1" characters (tests and fixtures). */
export function maskFromRows(rows: string[], x = 0, y = 0): Mask {
  const h = rows.length;
  const w = h ? rows[0].length : 0;
  const m = emptyMask(x, y, w, h);
  rows.forEach((r, j) => {
    for (let i = 0; i < w; i++) m.data[j * w + i] = r[i] === "1" ? 1 : 0;
  });
  return m;
}

export function maskToRows(m: Mask): string[] {
  const rows: string[] = [];
  for (let j = 0; j < m.h; j++) rows.push(Array.from(m.data.subarray(j * m.w, (j + 1) * m.w)).join(""));
  return rows;
}
