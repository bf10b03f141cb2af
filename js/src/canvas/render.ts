// Drawing: the image (from a mip pyramid), masks (from cached per-mask canvases), boxes, tags and the
// in-progress shapes of the tools. Everything is drawn in one pass per animation frame.

import type { Task } from "../protocol";
import { type Box, HANDLES, handlePoint, normBox, type Point, toScreen, type View } from "./geometry";
import { asUint8, type Bytes, type Mask, type Rect } from "./mask";
import type { Obj } from "./objects";

// ------------------------------------------------------------------------------------------ image
/** The decoded image and halvings of it down to ~256 px, largest first. Drawing a 2299×2472 bitmap
 * into a 600 px wide view every frame is what makes panning stutter; the level just above the
 * on-screen size is both faster and smoother (the browser's one-step downscale aliases). */
export class Pyramid {
  private constructor(readonly levels: ImageBitmap[]) {}

  static async decode(bytes: Bytes, signal: { cancelled: boolean }): Promise<Pyramid | null> {
    const u = asUint8(bytes);
    if (!u.length) return null;
    const full = await createImageBitmap(new Blob([u as Uint8Array<ArrayBuffer>]));
    const levels = [full];
    let w = full.width;
    let h = full.height;
    while (Math.max(w, h) > 512 && !signal.cancelled) {
      w = Math.max(1, Math.round(w / 2));
      h = Math.max(1, Math.round(h / 2));
      try {
        levels.push(await createImageBitmap(full, { resizeWidth: w, resizeHeight: h, resizeQuality: "medium" }));
      } catch {
        break; // a browser without resize options: the full level still draws
      }
    }
    if (signal.cancelled) {
      levels.forEach((b) => b.close());
      return null;
    }
    return new Pyramid(levels);
  }

  /** The smallest level at least `deviceWidth` pixels wide (the largest when none is). */
  pick(deviceWidth: number): ImageBitmap {
    let best = this.levels[0];
    for (const l of this.levels) if (l.width >= deviceWidth) best = l;
    return best;
  }

  close(): void {
    this.levels.forEach((b) => b.close());
  }
}

// ------------------------------------------------------------------------------------------ masks
type Canvas2D = HTMLCanvasElement | OffscreenCanvas;

function makeCanvas(w: number, h: number): Canvas2D {
  if (typeof OffscreenCanvas !== "undefined") return new OffscreenCanvas(Math.max(1, w), Math.max(1, h));
  const c = document.createElement("canvas");
  c.width = Math.max(1, w);
  c.height = Math.max(1, h);
  return c;
}

function ctx2d(c: Canvas2D): CanvasRenderingContext2D {
  return c.getContext("2d") as CanvasRenderingContext2D;
}

const rgbaCache = new Map<string, number>();
/** A CSS colour as one little-endian RGBA uint32 (what a Uint32Array view of ImageData holds). */
function rgba(color: string): number {
  let v = rgbaCache.get(color);
  if (v !== undefined) return v;
  const c = ctx2d(makeCanvas(1, 1));
  c.fillStyle = color;
  c.fillRect(0, 0, 1, 1);
  const [r, g, b] = c.getImageData(0, 0, 1, 1).data;
  v = ((255 << 24) | (b << 16) | (g << 8) | r) >>> 0;
  rgbaCache.set(color, v);
  return v;
}

interface MaskEntry {
  canvas: Canvas2D;
  color: string;
  used: boolean;
}

type Look = "fill" | "outline";

/** One class-coloured canvas per mask, drawn with the object's alpha, and the outline of the selected
 * mask. Rebuilt only when the mask object or its colour changes; a stroke patches just the rectangle
 * it painted (`painted`), and a working copy that takes a mask's place keeps its drawing (`replaced`). */
export class MaskCache {
  private entries = new Map<Mask, MaskEntry>();
  private outlineOf: { mask: Mask; entry: MaskEntry } | null = null;
  private anchors = new WeakMap<Mask, Point>();

  get(m: Mask, color: string): Canvas2D {
    let e = this.entries.get(m);
    if (!e || e.color !== color) {
      e = this.build(m, color, "fill");
      this.entries.set(m, e);
    }
    e.used = true;
    return e.canvas;
  }

  /** The mask's border pixels (1 image px wide), cached for one mask: the selected one. */
  outline(m: Mask, color: string): Canvas2D {
    const o = this.outlineOf;
    if (o && o.mask === m && o.entry.color === color) return o.entry.canvas;
    this.outlineOf = { mask: m, entry: this.build(m, color, "outline") };
    return this.outlineOf.entry.canvas;
  }

  /** `to` holds `from`'s pixels in a crop at least as large: reuse the drawings. */
  replaced(from: Mask, to: Mask): void {
    const e = this.entries.get(from);
    if (e) {
      this.entries.delete(from);
      this.entries.set(to, this.moved(e, from, to));
    }
    if (this.outlineOf?.mask === from) this.outlineOf = { mask: to, entry: this.moved(this.outlineOf.entry, from, to) };
  }

  /** The top-most, then left-most set pixel (image px): where a mask's tag goes. */
  firstPixel(m: Mask): Point {
    let p = this.anchors.get(m);
    if (!p) {
      const i = m.data.indexOf(1);
      p = i < 0 ? { x: m.x, y: m.y } : { x: m.x + (i % m.w), y: m.y + Math.floor(i / m.w) };
      this.anchors.set(m, p);
    }
    return p;
  }

  painted(m: Mask, r: Rect): void {
    this.anchors.delete(m);
    const e = this.entries.get(m);
    if (e) this.paint(e, m, r, "fill");
    // a pixel's outline state depends on its neighbours: redo one pixel more around the change
    if (this.outlineOf?.mask === m) {
      this.paint(this.outlineOf.entry, m, { x0: r.x0 - 1, y0: r.y0 - 1, x1: r.x1 + 1, y1: r.y1 + 1 }, "outline");
    }
  }

  private build(m: Mask, color: string, look: Look): MaskEntry {
    const e = { canvas: makeCanvas(m.w, m.h), color, used: true };
    this.paint(e, m, { x0: m.x, y0: m.y, x1: m.x + m.w, y1: m.y + m.h }, look);
    return e;
  }

  private moved(e: MaskEntry, from: Mask, to: Mask): MaskEntry {
    if (from.x === to.x && from.y === to.y && from.w === to.w && from.h === to.h) return e;
    const c = makeCanvas(to.w, to.h);
    ctx2d(c).drawImage(e.canvas, from.x - to.x, from.y - to.y);
    return { ...e, canvas: c };
  }

  private paint(e: MaskEntry, m: Mask, r: Rect, look: Look): void {
    const x0 = Math.max(r.x0, m.x);
    const y0 = Math.max(r.y0, m.y);
    const x1 = Math.min(r.x1, m.x + m.w);
    const y1 = Math.min(r.y1, m.y + m.h);
    if (x1 <= x0 || y1 <= y0) return;
    const w = x1 - x0;
    const img = new ImageData(w, y1 - y0);
    const px = new Uint32Array(img.data.buffer);
    const on = rgba(e.color);
    const d = m.data;
    const mw = m.w;
    for (let y = y0; y < y1; y++) {
      const my = y - m.y;
      const row = my * mw - m.x;
      const dst = (y - y0) * w - x0;
      for (let x = x0; x < x1; x++) {
        if (!d[row + x]) continue;
        if (look === "outline") {
          const mx = x - m.x;
          const inner = mx > 0 && mx < mw - 1 && my > 0 && my < m.h - 1 &&
            d[row + x - 1] && d[row + x + 1] && d[row + x - mw] && d[row + x + mw];
          if (inner) continue;
        }
        px[dst + x] = on;
      }
    }
    ctx2d(e.canvas).putImageData(img, x0 - m.x, y0 - m.y);
  }

  /** Forget masks not drawn since the last call (deleted objects, old undo states). */
  prune(): void {
    for (const [m, e] of this.entries) {
      if (!e.used) this.entries.delete(m);
      else e.used = false;
    }
  }

  clear(): void {
    this.entries.clear();
    this.outlineOf = null;
  }
}

// ------------------------------------------------------------------------------------------ scene
export interface Scene {
  view: View;
  /** CSS size of the canvas and the device pixel ratio */
  width: number;
  height: number;
  dpr: number;
  task: Task;
  imageSize: [number, number];
  pyramid: Pyramid | null;
  /** visible objects in drawing order */
  objects: readonly Obj[];
  selected: string;
  /** whether the selected box shows resize handles (only a box picked up by a click can be resized) */
  handles: boolean;
  classes: readonly string[];
  colors: readonly string[];
  /** box being drawn (image px) and its class */
  draft: { box: Box; label: number } | null;
  /** polygon being drawn (image px) and the pointer */
  polygon: { points: Point[]; cursor: Point | null; label: number } | null;
  /** brush outline at the pointer (image px centre, radius) */
  brush: { x: number; y: number; r: number; erase: boolean } | null;
  /** the click tool's clicks on this image (image px) */
  clicks?: readonly ClickMark[];
}

/** A correction click: green + adds, red − removes; hollow while the kernel has not answered. */
export interface ClickMark {
  id: string;
  x: number;
  y: number;
  positive: boolean;
  pending: boolean;
}

export const MASK_ALPHA = 0.45;
export const PRELABEL_MASK_ALPHA = 0.25;
const FONT = "12px system-ui, -apple-system, 'Segoe UI', sans-serif";

export function colorOf(colors: readonly string[], label: number): string {
  return colors.length ? colors[((label % colors.length) + colors.length) % colors.length] : "#1f77b4";
}

export function tagText(o: Obj, classes: readonly string[]): string {
  const name = classes[o.label] ?? `class ${o.label}`;
  return o.source === "prelabel" && o.score !== null ? `${name} ${o.score.toFixed(2)}` : name;
}

/** Draws a frame. Returns whether the image itself was drawn (the page's "ready" signal). */
export function drawScene(ctx: CanvasRenderingContext2D, s: Scene, masks: MaskCache): boolean {
  const { view: v, dpr } = s;
  const [W, H] = s.imageSize;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);

  // image and masks in image coordinates
  ctx.setTransform(dpr * v.scale, 0, 0, dpr * v.scale, dpr * v.ox, dpr * v.oy);
  let drewImage = false;
  if (s.pyramid && W > 0 && H > 0) {
    const level = s.pyramid.pick(W * v.scale * dpr);
    // smooth when shrinking; show crisp pixels once they are large enough to label one by one
    ctx.imageSmoothingEnabled = (v.scale * dpr * W) / level.width < 3;
    ctx.imageSmoothingQuality = "medium";
    ctx.drawImage(level, 0, 0, W, H);
    drewImage = true;
  }
  ctx.imageSmoothingEnabled = false;
  for (const o of s.objects) {
    if (!o.mask || o.mask.w === 0) continue;
    const color = colorOf(s.colors, o.label);
    ctx.globalAlpha = o.source === "prelabel" ? PRELABEL_MASK_ALPHA : o.id === s.selected ? 0.55 : MASK_ALPHA;
    ctx.drawImage(masks.get(o.mask, color), o.mask.x, o.mask.y, o.mask.w, o.mask.h);
  }
  ctx.globalAlpha = 1;
  const sel = s.objects.find((o) => o.id === s.selected);
  if (sel?.mask && sel.mask.w > 0) {
    ctx.drawImage(masks.outline(sel.mask, "#ffffff"), sel.mask.x, sel.mask.y, sel.mask.w, sel.mask.h);
  }
  masks.prune();

  // outlines and tags in screen pixels, so lines keep their width whatever the zoom
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.font = FONT;
  ctx.textBaseline = "middle";
  const many = s.objects.length > 150;
  // every outline before any tag, so no box's line runs through another box's name
  for (const part of ["outline", "tag"] as const) {
    for (const o of s.objects) {
      if (o.id !== s.selected) drawObject(ctx, s, masks, o, false, many, part);
    }
  }
  if (sel) drawObject(ctx, s, masks, sel, true, false, "all");

  if (s.draft) {
    const color = colorOf(s.colors, s.draft.label);
    const r = screenRect(v, normBox(s.draft.box));
    ctx.setLineDash([4, 3]);
    ctx.lineWidth = 2;
    ctx.strokeStyle = color;
    ctx.strokeRect(r.x, r.y, r.w, r.h);
    ctx.setLineDash([]);
  }
  if (s.polygon && s.polygon.points.length) drawPolygon(ctx, s);
  if (s.brush) {
    const c = toScreen(v, s.brush);
    const r = Math.max(1, s.brush.r * v.scale);
    ctx.lineWidth = 1;
    ctx.strokeStyle = "rgba(0,0,0,0.8)";
    ctx.beginPath();
    ctx.arc(c.x, c.y, r + 1, 0, Math.PI * 2);
    ctx.stroke();
    ctx.strokeStyle = s.brush.erase ? "#ff5050" : "#ffffff";
    ctx.setLineDash(s.brush.erase ? [3, 3] : []);
    ctx.beginPath();
    ctx.arc(c.x, c.y, r, 0, Math.PI * 2);
    ctx.stroke();
    ctx.setLineDash([]);
  }
  for (const c of s.clicks ?? []) drawClick(ctx, v, c);
  return drewImage;
}

function drawClick(ctx: CanvasRenderingContext2D, v: View, c: ClickMark): void {
  const p = toScreen(v, c);
  const color = c.positive ? "#2ca02c" : "#d62728";
  ctx.beginPath();
  ctx.arc(p.x, p.y, 6, 0, Math.PI * 2);
  ctx.fillStyle = c.pending ? "rgba(255,255,255,0.85)" : color;
  ctx.fill();
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = c.pending ? color : "#ffffff";
  ctx.stroke();
  ctx.beginPath();
  ctx.moveTo(p.x - 3, p.y);
  ctx.lineTo(p.x + 3, p.y);
  if (c.positive) {
    ctx.moveTo(p.x, p.y - 3);
    ctx.lineTo(p.x, p.y + 3);
  }
  ctx.lineWidth = 2;
  ctx.strokeStyle = c.pending ? color : "#ffffff";
  ctx.stroke();
}

function screenRect(v: View, b: Box): { x: number; y: number; w: number; h: number } {
  const a = toScreen(v, { x: b[0], y: b[1] });
  const c = toScreen(v, { x: b[2], y: b[3] });
  return { x: a.x, y: a.y, w: c.x - a.x, h: c.y - a.y };
}

function drawObject(
  ctx: CanvasRenderingContext2D, s: Scene, masks: MaskCache, o: Obj, selected: boolean, many: boolean,
  part: "outline" | "tag" | "all",
): void {
  const r = screenRect(s.view, normBox(o.box));
  // off screen (zoomed in on a large image): nothing to draw; the tag sits up to 16 px above
  if (r.x > s.width || r.y > s.height + 16 || r.x + r.w < -200 || r.y + r.h < -16) return;
  const color = colorOf(s.colors, o.label);
  const pending = o.source === "prelabel";
  const isMask = !!o.mask;
  // a user mask shows through its fill; its box would only clutter
  const boxed = !isMask || pending || selected;
  if (boxed && part !== "tag") {
    ctx.lineWidth = selected ? 3 : isMask ? 1.5 : 2;
    ctx.strokeStyle = color;
    ctx.setLineDash(pending ? [6, 4] : isMask ? [2, 3] : []);
    ctx.strokeRect(r.x, r.y, r.w, r.h);
    ctx.setLineDash([]);
  }
  // with hundreds of objects, tags only on those large enough on screen to carry one
  if (part !== "outline" && (selected || !many || r.w > 40)) {
    // an unboxed mask's tag sits at its first pixel: semantic masks' boxes all start at the image
    // corner, their pixels do not
    const at = !boxed && o.mask ? toScreen(s.view, masks.firstPixel(o.mask)) : { x: r.x, y: r.y };
    drawTag(ctx, tagText(o, s.classes), color, at.x, at.y, pending);
  }
  if (selected && s.handles && !isMask && s.task === "detection") {
    const b = normBox(o.box);
    for (const hd of HANDLES) {
      const p = handlePoint(s.view, b, hd);
      ctx.fillStyle = "#ffffff";
      ctx.fillRect(p.x - 4, p.y - 4, 8, 8);
      ctx.lineWidth = 1.5;
      ctx.strokeStyle = color;
      ctx.strokeRect(p.x - 4, p.y - 4, 8, 8);
    }
  }
}

/** A class-coloured label at a box's top-left corner (above it when there is room). Canvas text is
 * drawn literally, so class names need no escaping here. */
const tagWidths = new Map<string, number>();

function drawTag(ctx: CanvasRenderingContext2D, text: string, color: string, x: number, y: number, pending: boolean): void {
  // measuring text is a noticeable part of a frame with hundreds of tags; the set of tags is small
  let w = tagWidths.get(text);
  if (w === undefined) {
    w = Math.ceil(ctx.measureText(text).width) + 8;
    if (tagWidths.size > 5000) tagWidths.clear();
    tagWidths.set(text, w);
  }
  const h = 16;
  const ty = y - h >= 0 ? y - h : y;
  ctx.globalAlpha = pending ? 0.75 : 0.9;
  ctx.fillStyle = color;
  ctx.fillRect(x, ty, w, h);
  ctx.globalAlpha = 1;
  ctx.fillStyle = "#ffffff";
  ctx.fillText(text, x + 4, ty + h / 2 + 0.5);
}

function drawPolygon(ctx: CanvasRenderingContext2D, s: Scene): void {
  const poly = s.polygon!;
  const color = colorOf(s.colors, poly.label);
  const pts = poly.points.map((p) => toScreen(s.view, p));
  ctx.beginPath();
  ctx.moveTo(pts[0].x, pts[0].y);
  for (const p of pts.slice(1)) ctx.lineTo(p.x, p.y);
  if (poly.cursor) {
    const c = toScreen(s.view, poly.cursor);
    ctx.lineTo(c.x, c.y);
  }
  ctx.globalAlpha = 0.2;
  ctx.fillStyle = color;
  ctx.fill("evenodd");
  ctx.globalAlpha = 1;
  ctx.lineWidth = 2;
  ctx.strokeStyle = color;
  ctx.stroke();
  pts.forEach((p, i) => {
    ctx.beginPath();
    ctx.arc(p.x, p.y, i === 0 ? 5 : 3, 0, Math.PI * 2);
    ctx.fillStyle = i === 0 ? color : "#ffffff";
    ctx.fill();
    ctx.strokeStyle = color;
    ctx.lineWidth = 1.5;
    ctx.stroke();
  });
}
