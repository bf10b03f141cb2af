// One mask edit (a brush or eraser stroke, a polygon, a hole fill) over the canvas' objects.
//
// Which masks an edit touches depends on the mode, and is decided once when the edit starts:
//   instance mode  brush:  the selected instance, or a new one of class `label`
//                  eraser: the selected instance, or every visible instance under the eraser
//   semantic mode  brush:  the one mask of class `label` (created if missing); the same pixels are
//                          removed from the other classes' masks (one class per pixel)
//                  eraser: every visible class mask
// Masks touched are copied on first touch (the originals stay valid in the undo history) and painted
// in place during the stroke; `finish` turns the result into a new object list.

import { boxArea } from "./geometry";
import {
  cloneMask, copyMask, emptyMask, fillHole, fillPolygon, growMask, type Mask, type Painted, paintSegment,
  polygonRect, type Rect, segmentRect, tightBox,
} from "./mask";
import { edited, isVisible, newId, type Obj, type Threshold } from "./objects";

export interface EditContext {
  /** original image size */
  W: number;
  H: number;
  threshold: Threshold;
  semantic: boolean;
  /** class of new instances / the semantic class being painted */
  label: number;
  /** selected object id, "" = none */
  selected: string;
}

/** Told when a working copy takes a mask's place (same pixels, maybe a larger crop), so a renderer
 * can keep its cached drawing of the mask instead of rebuilding it; and when pixels changed. */
export interface MaskListener {
  replaced?(from: Mask, to: Mask): void;
  painted?(mask: Mask, rect: Rect): void;
}

export type EditMode = "paint" | "erase";

export class MaskEdit {
  private readonly work = new Map<string, Mask>();
  private readonly changed = new Map<string, number>();
  private readonly created: Obj | null = null;
  /** the object painted into (paint mode) */
  readonly targetId: string | null = null;
  /** objects whose pixels this edit clears */
  private readonly erasable: Obj[];

  constructor(
    private readonly objs: readonly Obj[],
    private readonly ctx: EditContext,
    readonly mode: EditMode,
    private readonly listener: MaskListener = {},
  ) {
    const vis = objs.filter((o) => isVisible(o, ctx.threshold));
    const sel = vis.find((o) => o.id === ctx.selected);
    if (mode === "paint") {
      let target: Obj | undefined;
      if (ctx.semantic) {
        const same = vis.filter((o) => o.label === ctx.label);
        target = same.find((o) => o.source === "user") ?? same[0];
      } else {
        target = sel;
      }
      if (!target) {
        target = { id: newId(objs), label: ctx.label, box: [0, 0, 0, 0], source: "user", score: null, mask: null };
        this.created = target;
      }
      this.targetId = target.id;
      this.erasable = ctx.semantic ? vis.filter((o) => o.id !== target!.id && o.mask) : [];
    } else {
      this.erasable = !ctx.semantic && sel ? [sel] : vis.filter((o) => o.mask);
    }
  }

  /** The working mask of `id` covering `need` (copied / grown on demand). */
  private workingMask(o: Obj, need: Rect | null): Mask {
    let m = this.work.get(o.id);
    if (!m) {
      const orig = o.mask ?? emptyMask();
      m = orig.w > 0 ? cloneMask(orig) : orig;
      if (orig.w > 0) this.listener.replaced?.(orig, m);
    }
    if (need) {
      const grown = growMask(m, need, this.ctx.W, this.ctx.H);
      if (grown !== m && m.w > 0) this.listener.replaced?.(m, grown);
      m = grown;
    }
    this.work.set(o.id, m);
    return m;
  }

  private target(): Obj | undefined {
    return this.created ?? this.objs.find((o) => o.id === this.targetId);
  }

  private note(id: string, m: Mask, p: Painted): void {
    if (!p.changed || !p.rect) return;
    this.changed.set(id, (this.changed.get(id) ?? 0) + p.changed);
    this.listener.painted?.(m, p.rect);
  }

  /** Clear `what` from every erasable mask whose crop meets `rect`. */
  private clearOthers(rect: Rect, what: (m: Mask) => Painted): void {
    for (const o of this.erasable) {
      const cur = this.work.get(o.id) ?? o.mask;
      if (!cur || cur.x >= rect.x1 || cur.y >= rect.y1 || cur.x + cur.w <= rect.x0 || cur.y + cur.h <= rect.y0) continue;
      const m = this.workingMask(o, null);
      this.note(o.id, m, what(m));
    }
  }

  /** One piece of a stroke, from the previous pointer position to the current one (image px). */
  segment(x0: number, y0: number, x1: number, y1: number, radius: number): void {
    const rect = segmentRect(x0, y0, x1, y1, radius);
    if (this.mode === "paint") {
      const t = this.target()!;
      const m = this.workingMask(t, rect);
      this.note(t.id, m, paintSegment(m, x0, y0, x1, y1, radius, 1));
    }
    this.clearOthers(rect, (m) => paintSegment(m, x0, y0, x1, y1, radius, 0));
  }

  /** Fill a closed polygon (image px vertices; even-odd rule) into the target. */
  polygon(pts: readonly { x: number; y: number }[]): void {
    if (this.mode !== "paint" || pts.length < 3) return;
    const rect = polygonRect(pts);
    const t = this.target()!;
    const m = this.workingMask(t, rect);
    this.note(t.id, m, fillPolygon(m, pts, 1));
    this.clearOthers(rect, (o) => fillPolygon(o, pts, 0));
  }

  /** Fill the hole of the target's mask around (x, y). Returns a message for the person when there
   * is nothing to fill there, else null. */
  fillHole(x: number, y: number): string | null {
    const t = this.target();
    if (this.mode !== "paint" || !t || this.created || !t.mask) return "Select a mask first, then click inside one of its holes";
    const m = this.workingMask(t, null);
    const before = this.ctx.semantic ? cloneMask(m) : null;
    const r = fillHole(m, x, y);
    if (!r.ok) {
      return r.reason === "on-mask"
        ? "That pixel is already part of the mask: click inside a hole"
        : "That region is not enclosed by the mask, so there is no hole to fill";
    }
    this.note(t.id, m, r.painted);
    if (before && r.painted.rect) {
      // the newly filled pixels leave the other classes' masks
      const added = emptyMask(m.x, m.y, m.w, m.h);
      for (let i = 0; i < m.data.length; i++) added.data[i] = m.data[i] & (before.data[i] ^ 1);
      this.clearOthers(r.painted.rect, (o) => {
        const copy = o.data.slice();
        copyMask(o, added, 0);
        let n = 0;
        for (let i = 0; i < copy.length; i++) n += copy[i] ^ o.data[i];
        return { rect: r.painted.rect, changed: n };
      });
    }
    return null;
  }

  get hasChanges(): boolean {
    for (const n of this.changed.values()) if (n > 0) return true;
    return false;
  }

  /** The objects as they look mid-stroke (working masks; boxes not yet updated), for drawing. */
  live(): Obj[] {
    const out = this.objs.map((o) => {
      const m = this.work.get(o.id);
      return m ? { ...o, mask: m } : o;
    });
    const c = this.created;
    const cm = c && this.work.get(c.id);
    if (c && cm) out.push({ ...c, mask: cm });
    return out;
  }

  /** The edited object list and the selection after the edit. Changed objects become the user's
   * with a tight box; an instance erased to nothing is removed. */
  finish(): { objects: Obj[]; selected: string } {
    const settle = (o: Obj): Obj | null => {
      const m = this.work.get(o.id);
      if (!m || !this.changed.get(o.id)) return o;
      const box = tightBox(m);
      return box && boxArea(box) > 0 ? edited(o, { mask: m, box }) : null;
    };
    const objects: Obj[] = [];
    for (const o of this.objs) {
      const n = settle(o);
      if (n) objects.push(n);
    }
    if (this.created) {
      const n = settle(this.created);
      if (n && n !== this.created) objects.push(n);
    }
    let selected = this.ctx.selected;
    if (this.mode === "paint" && !this.ctx.semantic && this.targetId && objects.some((o) => o.id === this.targetId)) {
      selected = this.targetId;
    }
    if (!objects.some((o) => o.id === selected)) selected = "";
    return { objects, selected };
  }
}

/** Give object `id` class `label`. In semantic mode a class has one mask, so when that class already
 * has one the object's pixels are merged into it (and the merged object is selected). */
export function relabel(
  objs: readonly Obj[], id: string, label: number, semantic: boolean, W: number, H: number, threshold: Threshold,
): { objects: Obj[]; selected: string } {
  const o = objs.find((x) => x.id === id);
  const into = semantic && o?.mask ? objs.find((x) => x.id !== id && x.label === label && x.mask && isVisible(x, threshold)) : undefined;
  if (!o || !o.mask || !into?.mask) {
    return { objects: objs.map((x) => (x.id === id && (x.label !== label || x.source !== "user") ? edited(x, { label }) : x)), selected: id };
  }
  const src = o.mask;
  const m = growMask(cloneMask(into.mask), { x0: src.x, y0: src.y, x1: src.x + src.w, y1: src.y + src.h }, W, H, 0);
  copyMask(m, src, 1);
  const box = tightBox(m)!;
  const objects = objs.filter((x) => x.id !== id).map((x) => (x.id === into.id ? edited(x, { mask: m, box }) : x));
  return { objects, selected: into.id };
}
