// Pointer gestures of the tools. A gesture changes only a draft while the pointer is down; the edit
// is committed (history + sync to Python) once, on pointerup, so a drag never floods the kernel.

import type { Task } from "../protocol";
import {
  type Box, HANDLE_CURSOR, type Handle, hitTest, type Hittable, normBox, panBy, type Point, toImage,
  toScreen, type View,
} from "./geometry";
import type { Tool } from "./keys";
import { maskHas } from "./mask";
import { addBox, moveObj, type Obj, resizeObj, type Threshold } from "./objects";
import { type EditContext, MaskEdit, type MaskListener } from "./paint";

/** What the tools need from the canvas view. */
export interface ToolHost {
  readonly task: Task;
  readonly tool: Tool;
  readonly view: View;
  readonly imageSize: [number, number];
  readonly objects: readonly Obj[];
  readonly selected: string;
  /** the selection was chosen on purpose (see CanvasHost.picked): only then does a box show handles and move */
  readonly picked: boolean;
  readonly label: number;
  readonly brushSize: number;
  readonly semantic: boolean;
  readonly threshold: Threshold;
  readonly editable: boolean;
  readonly maskListener: MaskListener;
  visible(): Obj[];
  setView(v: View): void;
  select(id: string): void;
  /** a completed edit: record it for undo and send it to Python; `selected`: what it selects (default:
   * the selection stays) */
  commit(objects: Obj[], selected?: string): void;
  /** objects to draw instead of the committed ones while a gesture runs (null = none) */
  setLive(objects: readonly Obj[] | null): void;
  setDraftBox(d: { box: Box; label: number } | null): void;
  toast(text: string): void;
  redraw(): void;
  /** the click tool: ask the kernel to correct the masks at p (image px); it answers with new objects */
  sendClick(p: Point, positive: boolean): void;
}

/** Drags smaller than this (screen px) are clicks. */
export const CLICK_SLOP = 3;

type Gesture =
  | { kind: "pan"; start: Point; view0: View }
  /** `clickSelects`: the object under the press, selected if this turns out to be a click */
  | { kind: "create"; start: Point; startImg: Point; cur: Point; clickSelects: string }
  | { kind: "move"; id: string; start: Point; startImg: Point; moved: boolean; objs0: readonly Obj[] }
  | { kind: "resize"; id: string; handle: Handle; box0: Box; startImg: Point; objs0: readonly Obj[] }
  | { kind: "stroke"; edit: MaskEdit; last: Point }
  | { kind: "click"; start: Point }
  /** the click tool: a click asks the kernel; a drag pans instead */
  | { kind: "prompt"; start: Point; startImg: Point; view0: View; positive: boolean };

export function hittables(objs: readonly Obj[]): Hittable[] {
  return objs.map((o) => {
    const m = o.mask;
    return m ? { id: o.id, box: o.box, inside: (x: number, y: number, r: number) => maskHas(m, x, y, r) } : o;
  });
}

export class Tools {
  private g: Gesture | null = null;

  /** The box picked up (selected on purpose, with handles): only it moves or resizes when dragged. A box
   * just drawn is not selected, so the next drag, which in dense scenes often starts inside it or on its
   * corner, draws the neighbouring box. */
  get grabbed(): string {
    return this.host.picked ? this.host.selected : "";
  }
  /** polygon vertices in image px (segmentation) */
  polygon: Point[] = [];
  /** the pointer in image px while over the canvas (brush outline, polygon rubber band) */
  hover: Point | null = null;

  constructor(private readonly host: ToolHost) {}

  get busy(): boolean {
    return this.g !== null;
  }

  private editContext(): EditContext {
    const h = this.host;
    return { W: h.imageSize[0], H: h.imageSize[1], threshold: h.threshold, semantic: h.semantic, label: h.label, selected: h.selected };
  }

  private hit(p: Point) {
    const h = this.host;
    return hitTest(hittables(h.visible()), p, h.view, {
      selected: h.selected,
      tol: 6,
      handles: h.task === "detection" && h.picked,
    });
  }

  /** The CSS cursor for a pointer at screen point p when no button is down. */
  cursorAt(p: Point): string {
    const h = this.host;
    if (h.tool === "pan" || h.task === "classification") return "grab";
    if (h.task === "detection" && h.editable) {
      const hit = this.hit(p);
      if (hit && (hit.part !== "inside" || (hit.id === h.selected && hit.id === this.grabbed))) {
        return HANDLE_CURSOR[hit.part];
      }
      return "crosshair"; // over an unselected box a drag still draws (see downBox)
    }
    if (h.tool === "box") return this.hit(p) ? "pointer" : "default";
    if (h.tool === "click") return h.editable ? "crosshair" : "grab";
    return h.tool === "brush" || h.tool === "eraser" ? "none" : "crosshair";
  }

  down(p: Point, button: number, mods: { alt: boolean; shift: boolean }): boolean {
    const h = this.host;
    const ip = toImage(h.view, p);
    // the click tool: left click adds, Shift+click or a right click removes (a right drag still pans)
    if (h.tool === "click" && h.task === "segmentation" && h.editable && (button === 0 || button === 2) && !mods.alt) {
      this.g = { kind: "prompt", start: p, startImg: ip, view0: h.view, positive: button === 0 && !mods.shift };
      return true;
    }
    if (button === 1 || button === 2 || h.tool === "pan" || h.task === "classification" || (!h.editable && button === 0 && h.task === "detection")) {
      this.g = { kind: "pan", start: p, view0: h.view };
      return true;
    }
    if (button !== 0) return false;
    if (h.task === "detection") return this.downBox(p, ip);
    if (mods.alt || h.tool === "box" || h.tool === "click" || !h.editable) {
      this.g = { kind: "click", start: p };
      return true;
    }
    switch (h.tool) {
      case "brush":
      case "eraser": {
        const edit = new MaskEdit(h.objects, this.editContext(), h.tool === "brush" ? "paint" : "erase", h.maskListener);
        edit.segment(ip.x, ip.y, ip.x, ip.y, h.brushSize / 2);
        this.g = { kind: "stroke", edit, last: ip };
        h.setLive(edit.live());
        return true;
      }
      case "polygon":
        this.addVertex(p, ip);
        return false;
      case "fill": {
        const edit = new MaskEdit(h.objects, this.editContext(), "paint", h.maskListener);
        const msg = edit.fillHole(ip.x, ip.y);
        if (msg) h.toast(msg);
        else if (edit.hasChanges) {
          const r = edit.finish();
          h.commit(r.objects, r.selected);
        }
        return false;
      }
    }
    return false;
  }

  private downBox(p: Point, ip: Point): boolean {
    const h = this.host;
    const hit = this.hit(p);
    if (hit && hit.part !== "inside") {
      const o = h.objects.find((x) => x.id === hit.id)!;
      this.g = { kind: "resize", id: hit.id, handle: hit.part, box0: normBox(o.box), startImg: ip, objs0: h.objects };
    } else if (hit && hit.id === h.selected && hit.id === this.grabbed) {
      this.g = { kind: "move", id: hit.id, start: p, startImg: ip, moved: false, objs0: h.objects };
    } else {
      // Only the selected box moves: in dense scenes (cells, crowns) a new box usually starts inside
      // a neighbour's, so a drag there draws; a click there selects (and a second drag moves it).
      this.g = { kind: "create", start: p, startImg: ip, cur: ip, clickSelects: hit ? hit.id : "" };
    }
    return true;
  }

  move(p: Point): void {
    const h = this.host;
    const ip = toImage(h.view, p);
    this.hover = ip;
    const g = this.g;
    if (!g) {
      if (h.tool === "brush" || h.tool === "eraser" || this.polygon.length) h.redraw();
      return;
    }
    const [W, H] = h.imageSize;
    switch (g.kind) {
      case "pan":
        h.setView(panBy(g.view0, p.x - g.start.x, p.y - g.start.y));
        break;
      case "create":
        g.cur = ip;
        h.setDraftBox({ box: [g.startImg.x, g.startImg.y, ip.x, ip.y], label: h.label });
        break;
      case "move":
        if (!g.moved && Math.hypot(p.x - g.start.x, p.y - g.start.y) < CLICK_SLOP) return;
        g.moved = true;
        h.setLive(moveObj(g.objs0, g.id, ip.x - g.startImg.x, ip.y - g.startImg.y, W, H));
        break;
      case "resize":
        h.setLive(resizeObj(g.objs0, g.id, g.box0, g.handle, ip.x - g.startImg.x, ip.y - g.startImg.y, W, H));
        break;
      case "stroke":
        g.edit.segment(g.last.x, g.last.y, ip.x, ip.y, h.brushSize / 2);
        g.last = ip;
        h.setLive(g.edit.live());
        break;
      case "click":
        break;
      case "prompt":
        if (Math.hypot(p.x - g.start.x, p.y - g.start.y) >= CLICK_SLOP) {
          this.g = { kind: "pan", start: g.start, view0: g.view0 };
          h.setView(panBy(g.view0, p.x - g.start.x, p.y - g.start.y));
        }
        break;
    }
  }

  up(p: Point): void {
    const h = this.host;
    const g = this.g;
    this.g = null;
    if (!g) return;
    const ip = toImage(h.view, p);
    const [W, H] = h.imageSize;
    switch (g.kind) {
      case "pan":
        break;
      case "create": {
        h.setDraftBox(null);
        const a = toScreen(h.view, g.startImg);
        if (Math.abs(p.x - a.x) < CLICK_SLOP || Math.abs(p.y - a.y) < CLICK_SLOP) {
          h.select(g.clickSelects); // a click: pick up what is under it, or deselect on empty image
          break;
        }
        if (!h.editable) break;
        const [objs, o] = addBox(h.objects, [g.startImg.x, g.startImg.y, ip.x, ip.y], h.label, W, H);
        // drawing ends a selection and selects nothing: what a chip or a key then does, it does to what
        // the person sees selected (handles), never to a box selected behind their back
        if (o.box[2] - o.box[0] > 0 && o.box[3] - o.box[1] > 0) h.commit(objs, "");
        break;
      }
      case "move":
        h.setLive(null);
        if (g.moved && h.editable) h.commit(moveObj(g.objs0, g.id, ip.x - g.startImg.x, ip.y - g.startImg.y, W, H));
        break;
      case "resize":
        h.setLive(null);
        if (h.editable && (ip.x !== g.startImg.x || ip.y !== g.startImg.y)) {
          h.commit(resizeObj(g.objs0, g.id, g.box0, g.handle, ip.x - g.startImg.x, ip.y - g.startImg.y, W, H));
        }
        break;
      case "stroke": {
        h.setLive(null);
        if (g.edit.hasChanges) {
          const r = g.edit.finish();
          h.commit(r.objects, r.selected);
        }
        break;
      }
      case "click": {
        if (Math.hypot(p.x - g.start.x, p.y - g.start.y) >= CLICK_SLOP) break;
        const hit = this.hit(p);
        h.select(hit ? hit.id : "");
        break;
      }
      case "prompt":
        h.sendClick(g.startImg, g.positive);
        break;
    }
    h.redraw();
  }

  /** Abandon a gesture (pointer lost, the objects changed under it, a new image). */
  cancel(): void {
    if (!this.g) return;
    this.g = null;
    this.host.setLive(null);
    this.host.setDraftBox(null);
    this.host.redraw();
  }

  // ------------------------------------------------------------------------------------ polygon
  private addVertex(p: Point, ip: Point): void {
    const h = this.host;
    const pts = this.polygon;
    if (pts.length) {
      const first = toScreen(h.view, pts[0]);
      const last = toScreen(h.view, pts[pts.length - 1]);
      // a click on the first vertex, or a second click on the last (a double-click) closes it
      if (pts.length >= 3 && (Math.hypot(p.x - first.x, p.y - first.y) < 8 || Math.hypot(p.x - last.x, p.y - last.y) < 4)) {
        this.closePolygon();
        return;
      }
      if (Math.hypot(p.x - last.x, p.y - last.y) < 4) return;
    }
    const [W, H] = h.imageSize;
    pts.push({ x: Math.min(W, Math.max(0, ip.x)), y: Math.min(H, Math.max(0, ip.y)) });
    h.redraw();
  }

  closePolygon(): void {
    const h = this.host;
    const pts = this.polygon;
    this.polygon = [];
    if (pts.length < 3) {
      if (pts.length) h.toast("A polygon needs at least 3 vertices");
      h.redraw();
      return;
    }
    const edit = new MaskEdit(h.objects, this.editContext(), "paint", h.maskListener);
    edit.polygon(pts);
    if (edit.hasChanges) {
      const r = edit.finish();
      h.commit(r.objects, r.selected);
    }
    h.redraw();
  }

  undoVertex(): void {
    this.polygon.pop();
    this.host.redraw();
  }

  cancelPolygon(): void {
    this.polygon = [];
    this.host.redraw();
  }
}
