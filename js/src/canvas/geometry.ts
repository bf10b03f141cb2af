// Screen ↔ image transforms, box arithmetic and hit-testing: pure functions, no DOM.
//
// Every annotation lives in ORIGINAL image pixels (the `image_size` trait), whatever resolution the
// display bytes have. "Screen" means CSS pixels relative to the canvas' top-left corner; the device
// pixel ratio is applied only when drawing.

/** x0, y0, x1, y1 in original image pixels (x0 ≤ x1, y0 ≤ y1 once normalised). */
export type Box = [number, number, number, number];

export interface Point {
  x: number;
  y: number;
}

/** screen = image × scale + offset */
export interface View {
  scale: number;
  ox: number;
  oy: number;
}

export function toScreen(v: View, p: Point): Point {
  return { x: p.x * v.scale + v.ox, y: p.y * v.scale + v.oy };
}

export function toImage(v: View, p: Point): Point {
  return { x: (p.x - v.ox) / v.scale, y: (p.y - v.oy) / v.scale };
}

/** The whole image centred in a `cw` × `ch` viewport, `pad` CSS px from the nearest edges. */
export function fitView(iw: number, ih: number, cw: number, ch: number, pad = 8): View {
  if (iw <= 0 || ih <= 0 || cw <= 0 || ch <= 0) return { scale: 1, ox: 0, oy: 0 };
  const scale = Math.max(1e-4, Math.min((cw - 2 * pad) / iw, (ch - 2 * pad) / ih));
  return { scale, ox: (cw - iw * scale) / 2, oy: (ch - ih * scale) / 2 };
}

/** Zoom limits: far enough out to see the image small, in to ~40 screen px per image pixel. */
export function zoomLimits(fit: View): [number, number] {
  return [Math.min(fit.scale * 0.25, 1), Math.max(40, fit.scale * 4)];
}

/** Multiply the scale by `factor` (clamped) keeping the image point under (sx, sy) where it is. */
export function zoomAt(v: View, factor: number, sx: number, sy: number, limits: [number, number]): View {
  const scale = Math.min(limits[1], Math.max(limits[0], v.scale * factor));
  const k = scale / v.scale;
  return { scale, ox: sx - (sx - v.ox) * k, oy: sy - (sy - v.oy) * k };
}

export function panBy(v: View, dx: number, dy: number): View {
  return { scale: v.scale, ox: v.ox + dx, oy: v.oy + dy };
}

// ------------------------------------------------------------------------------------------- boxes
export function normBox(b: Box): Box {
  return [Math.min(b[0], b[2]), Math.min(b[1], b[3]), Math.max(b[0], b[2]), Math.max(b[1], b[3])];
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

/** Normalised and cut to the image. */
export function clampBox(b: Box, w: number, h: number): Box {
  const n = normBox(b);
  return [clamp(n[0], 0, w), clamp(n[1], 0, h), clamp(n[2], 0, w), clamp(n[3], 0, h)];
}

/** Shift by (dx, dy), stopping at the image border without changing the box's size. */
export function moveBox(b: Box, dx: number, dy: number, w: number, h: number): Box {
  const n = normBox(b);
  const bw = Math.min(n[2] - n[0], w);
  const bh = Math.min(n[3] - n[1], h);
  const x0 = clamp(n[0] + dx, 0, w - bw);
  const y0 = clamp(n[1] + dy, 0, h - bh);
  return [x0, y0, x0 + bw, y0 + bh];
}

export type Handle = "nw" | "n" | "ne" | "e" | "se" | "s" | "sw" | "w";
export const HANDLES: Handle[] = ["nw", "n", "ne", "e", "se", "s", "sw", "w"];

/** Drag one handle of `b` (the box when the drag started) by (dx, dy) image px. Dragging an edge
 * past the opposite one flips the box instead of producing a negative size. */
export function resizeBox(b: Box, handle: Handle, dx: number, dy: number, w: number, h: number): Box {
  const n = normBox(b).slice() as Box;
  if (handle.includes("w")) n[0] += dx;
  if (handle.includes("e")) n[2] += dx;
  if (handle.includes("n")) n[1] += dy;
  if (handle.includes("s")) n[3] += dy;
  return clampBox(n, w, h);
}

/** Keyboard nudges (jupyter-bbox-widget's W/A/S/D move, Q/E width, F/R height): the right and bottom
 * edges change; a box never shrinks below 1 px. */
export function adjustBox(b: Box, dw: number, dh: number, w: number, h: number): Box {
  const n = normBox(b);
  const x1 = clamp(n[2] + dw, n[0] + 1, w);
  const y1 = clamp(n[3] + dh, n[1] + 1, h);
  return [n[0], n[1], x1, y1];
}

/** Screen position of a handle of a normalised box. */
export function handlePoint(v: View, b: Box, hd: Handle): Point {
  const x = hd.includes("w") ? b[0] : hd.includes("e") ? b[2] : (b[0] + b[2]) / 2;
  const y = hd.includes("n") ? b[1] : hd.includes("s") ? b[3] : (b[1] + b[3]) / 2;
  return toScreen(v, { x, y });
}

export function boxArea(b: Box): number {
  return Math.abs(b[2] - b[0]) * Math.abs(b[3] - b[1]);
}

// ------------------------------------------------------------------------------------ hit-testing
/** What the hit-test needs of an object; `inside` answers for masks (pixel test in image px). */
export interface Hittable {
  id: string;
  box: Box;
  inside?: (x: number, y: number, radius: number) => boolean;
}

export type Part = Handle | "inside";
export interface Hit {
  id: string;
  part: Part;
}

export interface HitOptions {
  /** the selected object's id: only it has handles */
  selected?: string;
  /** tolerance in screen px around edges and handles (constant whatever the zoom) */
  tol?: number;
  /** false for masks: their box has no handles */
  handles?: boolean;
}

/** The object under screen point `p`. Callers pass visible objects only, in drawing order.
 *
 * The selected object's handles and edges win (so a small box inside it can still be resized by its
 * own handles once selected); otherwise the smallest object containing the point is chosen, so nested
 * boxes stay reachable, and among equals the topmost (drawn last). */
export function hitTest(objects: readonly Hittable[], p: Point, v: View, opts: HitOptions = {}): Hit | null {
  const tol = opts.tol ?? 6;
  const sel = opts.selected ? objects.find((o) => o.id === opts.selected) : undefined;
  if (sel && opts.handles !== false) {
    const b = normBox(sel.box);
    for (const hd of HANDLES) {
      const hp = handlePoint(v, b, hd);
      if (Math.abs(hp.x - p.x) <= tol && Math.abs(hp.y - p.y) <= tol) return { id: sel.id, part: hd };
    }
    const edge = edgeAt(b, p, v, tol);
    if (edge) return { id: sel.id, part: edge };
  }
  const ip = toImage(v, p);
  const rad = tol / v.scale;
  let best: Hittable | null = null;
  let bestArea = Infinity;
  for (const o of objects) {
    const b = normBox(o.box);
    const hit = o.inside
      ? o.inside(ip.x, ip.y, Math.min(rad, 4))
      : ip.x >= b[0] - rad && ip.x <= b[2] + rad && ip.y >= b[1] - rad && ip.y <= b[3] + rad;
    if (!hit) continue;
    const area = boxArea(b);
    if (area <= bestArea) {
      best = o;
      bestArea = area;
    }
  }
  return best ? { id: best.id, part: "inside" } : null;
}

/** The edge of `b` within `tol` screen px of `p` (inside the edge's extent), if any. */
function edgeAt(b: Box, p: Point, v: View, tol: number): Handle | null {
  const a = toScreen(v, { x: b[0], y: b[1] });
  const c = toScreen(v, { x: b[2], y: b[3] });
  const inX = p.x >= a.x - tol && p.x <= c.x + tol;
  const inY = p.y >= a.y - tol && p.y <= c.y + tol;
  if (!inX || !inY) return null;
  // On a small box the edge zones must leave room in the middle to grab it for moving.
  const ty = Math.min(tol, (c.y - a.y) / 4);
  const tx = Math.min(tol, (c.x - a.x) / 4);
  if (Math.abs(p.y - a.y) <= ty) return "n";
  if (Math.abs(p.y - c.y) <= ty) return "s";
  if (Math.abs(p.x - a.x) <= tx) return "w";
  if (Math.abs(p.x - c.x) <= tx) return "e";
  return null;
}

export const HANDLE_CURSOR: Record<Part, string> = {
  nw: "nwse-resize",
  se: "nwse-resize",
  ne: "nesw-resize",
  sw: "nesw-resize",
  n: "ns-resize",
  s: "ns-resize",
  e: "ew-resize",
  w: "ew-resize",
  inside: "move",
};
