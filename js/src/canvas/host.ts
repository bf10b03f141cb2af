// One view of a LabelCanvas model: reads the traits, owns the view state (zoom, selection, gesture,
// undo history), and writes back what the user changed. The drawing is in render.ts, the gestures in
// tools.ts, the keys in keys.ts, the pixel work in mask.ts / paint.ts.

import type { AnyModel } from "@anywidget/types";
import { type CanvasAction, type CanvasModel, type ClickMessage, PANEL_EVENT, type PanelRequest, type Task } from "../protocol";
import { Advance } from "./advance";
import { type Box, fitView, panBy, type Point, type View, zoomAt, zoomLimits } from "./geometry";
import { History } from "./history";
import { runCommand } from "./commands";
import { commandFor, repeatable, type Tool, wheelZooms } from "./keys";
import { fromWire, isVisible, type Obj, pendingCount, sameAsWire, type Threshold, toWire, visibleObjects } from "./objects";
import { type MaskListener, relabel } from "./paint";
import { type ClickMark, drawScene, MaskCache, Pyramid } from "./render";
import { Tools, type ToolHost } from "./tools";
import { mark } from "../dom";
import { Ui } from "./ui";

const TOOLS_OF: Record<Task, Tool[]> = {
  detection: ["box", "pan"],
  segmentation: ["box", "brush", "eraser", "polygon", "fill", "pan"],
  classification: ["pan"],
};

/** Traits whose changes the view follows. */
const TRAITS = [
  "classes", "colors", "image", "image_size", "image_id", "image_name", "objects", "category", "category_scores",
  "threshold", "class_thresholds", "label", "selected", "tool", "brush_size", "semantic", "view_only", "message", "height", "click_tool",
  "next_image", "next_meta", "next_objects", "group",
] as const;

/** The image a submission opens next, as the kernel sent it ahead, decoded in the background. */
interface NextSlot {
  readonly id: number;
  /** the `next_image` DataView it was decoded from (a new one means a new image) */
  readonly bytes: unknown;
  name: string;
  size: [number, number];
  /** the `next_objects` list `objects` was read from */
  wire: unknown;
  objects: readonly Obj[];
  categoryScores: number[];
  pyramid: Pyramid | null;
  readonly decoding: { cancelled: boolean };
  /** its pyramid is on screen (shown ahead, or adopted) */
  taken: boolean;
  /** what the person did on it before a revert: shown again at the next swap */
  kept: { objects: readonly Obj[]; category: number } | null;
}

/** The submitted image as it was at the swap, for a revert. */
interface Saved {
  id: number;
  size: [number, number];
  name: string;
  objects: readonly Obj[];
  history: History<readonly Obj[]>;
  selected: string;
  picked: boolean;
  category: number;
  categoryScores: number[];
  pyramid: Pyramid | null;
  pyramidId: number;
  imageBytes: unknown;
  view: View;
  fitted: boolean;
  clicks: ClickMark[];
  slot: NextSlot;
}

/** The element of the whole app holding a canvas (LiveAnnotator's and StreamAnnotator's boxes, classes
 * added in widgets/app.py and widgets/stream.py): its panel, strip and plots share the keyboard with the
 * canvas. */
const APP_SELECTOR = ".lt-app, .lt-stream-app";

/** Whether an element takes typed text (the canvas must not take the keyboard from it). */
function takesTyping(el: Element | null): boolean {
  if (!el) return false;
  if (el instanceof HTMLTextAreaElement || el instanceof HTMLSelectElement) return true;
  if (el instanceof HTMLElement && el.isContentEditable) return true;
  return el instanceof HTMLInputElement && !NOT_TYPED.has(el.type);
}

const NOT_TYPED = new Set(["button", "checkbox", "color", "file", "image", "radio", "range", "reset", "submit"]);

/** The canvas height (CSS px) when the model has none; widgets/canvas.py's default. */
const DEFAULT_HEIGHT = 440;

/** A click's request id: unique per view, since every view of the model receives every reply. */
const VIEW_TOKEN = () => Math.random().toString(36).slice(2, 10);

export class CanvasHost implements ToolHost {
  readonly task: Task;
  tool: Tool;
  view: View = { scale: 1, ox: 0, oy: 0 };
  imageSize: [number, number] = [0, 0];
  objects: readonly Obj[] = [];
  selected = "";
  /** The selection was chosen on purpose (a click on it, Tab, the kernel), not made by an edit (a brush
   * stroke's new instance): only such a selection shows handles, moves when dragged, and takes the class
   * of a chip clicked. A box just drawn is not selected at all (a chip then only chooses the class of
   * the next box, as the keys 1–9 do). */
  picked = false;
  label = 0;
  brushSize = 12;
  semantic = false;
  /** the threshold of pending pre-labels: `class_thresholds` when set, else `threshold` */
  threshold: Threshold = 0.3;
  readonly maskListener: MaskListener;

  private viewOnly = false;
  private classes: string[] = [];
  private colors: string[] = [];
  category = -1;
  private categoryScores: number[] = [];
  private imageName = "";

  readonly ui: Ui;
  private readonly ctx: CanvasRenderingContext2D;
  private readonly masks = new MaskCache();
  readonly tools: Tools;
  private history = new History<readonly Obj[]>(100);
  private readonly cleanups: (() => void)[] = [];

  private imageId = -1;
  private imageBytes: unknown = null;
  private pyramid: Pyramid | null = null;
  /** the image id the pyramid was decoded for */
  private pyramidId = -1;
  private decoding = { cancelled: false };
  /** the view follows the size of the widget until the user zooms or pans */
  private fitted = true;
  private cssW = 0;
  private cssH = 0;
  private dpr = 1;
  private raf = 0;
  private queued = false;
  private live: readonly Obj[] | null = null;
  private draft: { box: Box; label: number } | null = null;
  prevTool: Tool = "box";
  private readonly seenImage = new Set<number>();
  private readonly seenPrelabels = new Set<number>();
  /** the click tool is offered (the kernel answers clicks) */
  private clickTool = false;
  /** this image's clicks: pending until the kernel answers, then kept as a trace of the corrections */
  private clicks: ClickMark[] = [];
  private clickSeq = 0;
  private readonly viewToken = VIEW_TOKEN();
  /** the optimistic Finish & Next (advance.ts): the next image, the pending swap, the state to revert to */
  private readonly advance = new Advance();
  private nextSlot: NextSlot | null = null;
  private saved: Saved | null = null;
  private group = "";
  /** the hint that Ctrl + wheel zooms was shown (once per view) */
  private wheelHinted = false;

  constructor(private readonly model: AnyModel<CanvasModel>, el: HTMLElement, task: Task) {
    this.task = task;
    this.tool = task === "detection" ? "box" : task === "segmentation" ? "brush" : "pan";
    this.ui = new Ui(task, {
      tool: (t) => this.setTool(t),
      brushSize: (n) => this.setBrushSize(n),
      fit: () => this.fit(),
      zoom: (f) => this.zoom(f),
      undo: () => this.undo(),
      redo: () => this.redo(),
      acceptAll: () => runCommand(this, { kind: "acceptAll" }),
      discardAll: () => runCommand(this, { kind: "discardAll" }),
      chip: (i) => this.chooseChip(i),
      classify: (i) => this.classify(i, true),
      help: () => this.ui.showHelp(),
    });
    el.append(this.ui.root);
    this.ctx = this.ui.canvas.getContext("2d")!;
    this.tools = new Tools(this);
    const masks = this.masks;
    this.maskListener = {
      replaced: (from, to) => masks.replaced(from, to),
      painted: (m, r) => masks.painted(m, r),
    };

    const onChange = () => this.queueReconcile();
    for (const t of TRAITS) model.on(`change:${t}`, onChange);
    const onMsg = (msg: unknown) => this.onReply(msg);
    model.on("msg:custom", onMsg);
    const onPanel = (e: Event) => this.onPanel((e as CustomEvent<PanelRequest>).detail);
    window.addEventListener(PANEL_EVENT, onPanel);
    this.cleanups.push(() => {
      for (const t of TRAITS) model.off(`change:${t}`, onChange);
      model.off("msg:custom", onMsg);
      window.removeEventListener(PANEL_EVENT, onPanel);
    });

    this.listen();
    const ro = new ResizeObserver(() => this.resize());
    ro.observe(this.ui.stage);
    this.cleanups.push(() => ro.disconnect());
    this.reconcile();
    this.resize();
  }

  destroy(): void {
    this.cleanups.forEach((f) => f());
    if (this.raf) cancelAnimationFrame(this.raf);
    this.decoding.cancelled = true;
    this.pyramid?.close();
    this.dropSaved();
    this.dropNext();
    this.masks.clear();
    this.ui.destroy();
  }

  // ------------------------------------------------------------------------------ model → view
  /** Trait changes arrive one `change:x` event at a time; Python's `set_image` changes nine traits
   * in one message, and they must be read together (the new objects belong to the new image). */
  private queueReconcile(): void {
    if (this.queued) return;
    this.queued = true;
    queueMicrotask(() => {
      this.queued = false;
      this.reconcile();
    });
  }

  private reconcile(): void {
    const m = this.model;
    this.classes = (m.get("classes") ?? []).map(String);
    this.colors = m.get("colors") ?? [];
    this.ui.setClasses(this.classes, this.colors);
    const perClass = m.get("class_thresholds") ?? [];
    this.threshold = perClass.length ? perClass.map(Number) : Number(m.get("threshold") ?? 0.3);
    this.semantic = !!m.get("semantic");
    this.viewOnly = !!m.get("view_only");
    this.label = m.get("label") ?? 0;
    const clickTool = this.task === "segmentation" && !!m.get("click_tool");
    if (clickTool !== this.clickTool) {
      this.clickTool = clickTool;
      this.ui.setClickTool(clickTool);
    }
    const tool = m.get("tool") as Tool;
    this.tool = this.tools_().includes(tool) ? tool : this.tools_()[0];
    this.brushSize = Math.max(1, m.get("brush_size") ?? 12);
    this.ui.setBanner(m.get("message") ?? "");
    this.group = String(m.get("group") ?? "");
    this.reconcileNext();

    const id = m.get("image_id") ?? -1;
    const verdict = this.advance.onModel(id);
    if (verdict === "wait" || verdict === "adopt") {
      // the image shown ahead stays; the model still describes the submitted one, or confirms this one
      if (verdict === "adopt") this.adopt();
      this.resize();
      this.updateUi();
      this.redraw();
      return;
    }
    if (verdict === "replace") {
      this.advance.finish(); // the kernel opened another image: what was shown ahead goes like any image
      this.dropSaved();
    }
    this.category = m.get("category") ?? -1;
    this.categoryScores = m.get("category_scores") ?? [];
    this.imageName = m.get("image_name") ?? "";
    const size = (m.get("image_size") ?? [0, 0]) as [number, number];
    const bytes = m.get("image");
    const wire = m.get("objects");
    const onError = (e: string) => this.ui.toast(e);
    const newImage = id !== this.imageId;
    if (newImage) {
      // when the kernel's answer arrived, to tell the round trip from decoding and drawing
      mark("image_received", { image_id: id });
      // a new image: everything about the previous one goes
      this.tools.cancel();
      this.tools.cancelPolygon();
      this.history.clear();
      this.masks.clear();
      this.imageId = id;
      this.imageSize = [size[0], size[1]];
      this.objects = fromWire(wire, onError);
      this.selected = "";
      this.clicks = [];
      this.fitted = true;
      this.fitNow();
      this.ui.root.dataset.ready = "0";
      if (bytes !== this.imageBytes && !this.takeNextPyramid(id, bytes)) this.loadImage(bytes);
      else this.pyramidId = id;
    } else {
      if (size[0] !== this.imageSize[0] || size[1] !== this.imageSize[1]) {
        this.imageSize = [size[0], size[1]];
        this.fitted = true;
        this.fitNow();
      }
      if (bytes !== this.imageBytes) this.loadImage(bytes);
      if (!sameAsWire(this.objects, wire)) {
        // Python replaced the objects (new pre-labels, discard, accept): undo can bring them back
        this.tools.cancel();
        this.history.push(this.objects);
        this.objects = fromWire(wire, onError);
      }
    }
    // Ids repeat from image to image ("p0", "s0"): a selection never carries over to a new image.
    const sel = newImage ? "" : (m.get("selected") ?? "");
    const selected = this.objects.some((o) => o.id === sel) ? sel : "";
    // the kernel's (or another view's) choice is shown as chosen; our own echo changes nothing
    if (selected !== this.selected || !selected) this.picked = selected !== "";
    this.selected = selected;
    this.resize(); // the height trait
    this.updateUi();
    this.redraw();
  }

  private loadImage(bytes: unknown): void {
    this.decoding.cancelled = true;
    const signal = { cancelled: false };
    this.decoding = signal;
    this.imageBytes = bytes;
    const id = this.imageId;
    if (!bytes || !(bytes as DataView).byteLength) {
      this.pyramid?.close();
      this.pyramid = null;
      return;
    }
    Pyramid.decode(bytes as DataView, signal)
      .then((p) => {
        if (signal.cancelled) {
          p?.close();
          return;
        }
        this.pyramid?.close();
        this.pyramid = p;
        this.pyramidId = id;
        this.redraw();
      })
      .catch((e: unknown) => {
        if (!signal.cancelled) this.ui.toast(`The image could not be decoded (${(e as Error)?.message ?? e})`);
      });
  }

  // ------------------------------------------------------------------------------ the next image
  /** Follow `next_*`: a new next image is decoded in the background (the previous decoding cancelled). */
  private reconcileNext(): void {
    const m = this.model;
    const meta = (m.get("next_meta") ?? {}) as Record<string, unknown>;
    const bytes = m.get("next_image") as DataView | undefined;
    const id = typeof meta.image_id === "number" ? meta.image_id : -1;
    const size = Array.isArray(meta.image_size) ? meta.image_size.map(Number) : [];
    if (id < 0 || !bytes || !bytes.byteLength || size.length !== 2 || !(size[0] > 0 && size[1] > 0)) {
      this.dropNext();
      return;
    }
    let s = this.nextSlot;
    if (!s || s.id !== id || s.bytes !== bytes) {
      this.dropNext();
      s = this.nextSlot = {
        id, bytes, name: "", size: [0, 0], wire: undefined, objects: [], categoryScores: [], pyramid: null,
        decoding: { cancelled: false }, taken: false, kept: null,
      };
      this.decodeNext(s);
    }
    s.name = String(meta.image_name ?? "");
    s.size = [size[0], size[1]];
    s.categoryScores = Array.isArray(meta.category_scores) ? meta.category_scores.map(Number) : [];
    const wire = m.get("next_objects");
    if (s.wire !== wire) {
      s.wire = wire;
      s.objects = fromWire(wire, (e) => this.ui.toast(e));
    }
  }

  private decodeNext(s: NextSlot): void {
    Pyramid.decode(s.bytes as DataView, s.decoding)
      .then((p) => {
        if (s.decoding.cancelled || this.nextSlot !== s) {
          p?.close();
          return;
        }
        s.pyramid = p;
        mark("next_decoded", { image_id: s.id });
        this.updateUi();
      })
      .catch(() => {
        // not shown ahead then: opening it the usual way decodes it again and reports the problem
      });
  }

  /** Forget the next image (its pyramid too, unless it is on screen). */
  private dropNext(): void {
    const s = this.nextSlot;
    if (!s) return;
    s.decoding.cancelled = true;
    if (!s.taken) s.pyramid?.close();
    s.pyramid = null;
    this.nextSlot = null;
  }

  /** The kernel opened the image sent ahead (without an optimistic swap: Skip, another view's Enter):
   * its pyramid is decoded already. */
  private takeNextPyramid(id: number, bytes: unknown): boolean {
    const s = this.nextSlot;
    if (!s || s.id !== id || s.taken || !s.pyramid) return false;
    this.decoding.cancelled = true;
    if (this.pyramid !== s.pyramid) this.pyramid?.close();
    this.pyramid = s.pyramid;
    this.imageBytes = bytes;
    s.pyramid = null;
    s.taken = true;
    return true;
  }

  /** Finish & Next with the next image decoded: show it now, keep the submitted one for a revert. */
  private advanceTo(from: number): void {
    const s = this.nextSlot;
    const next = s && !s.taken ? { id: s.id, decoded: s.pyramid !== null } : null;
    if (!s || !Advance.possible(from, next, this.editable) || this.advance.pending) return;
    this.tools.cancel();
    this.tools.cancelPolygon();
    this.decoding.cancelled = true; // a decoding of the submitted image still running: redone on a revert
    this.saved = {
      id: this.imageId, size: this.imageSize, name: this.imageName, objects: this.objects, history: this.history,
      selected: this.selected, picked: this.picked, category: this.category, categoryScores: this.categoryScores,
      pyramid: this.pyramidId === this.imageId ? this.pyramid : null, pyramidId: this.pyramidId,
      imageBytes: this.imageBytes, view: this.view, fitted: this.fitted, clicks: this.clicks, slot: s,
    };
    if (this.pyramid && this.pyramid !== this.saved.pyramid) this.pyramid.close();
    this.advance.start(from, s.id);
    this.history = new History<readonly Obj[]>(100);
    this.masks.clear();
    this.imageId = s.id;
    this.imageSize = [s.size[0], s.size[1]];
    this.imageName = s.name;
    this.objects = s.kept ? s.kept.objects : s.objects;
    this.category = s.kept ? s.kept.category : -1;
    if (s.kept) this.advance.edited();
    this.categoryScores = s.categoryScores;
    this.selected = "";
    this.clicks = [];
    this.pyramid = s.pyramid;
    this.pyramidId = s.id;
    this.imageBytes = s.bytes;
    s.pyramid = null;
    s.taken = true;
    this.fitted = true;
    this.fitNow();
    this.ui.root.dataset.ready = "0";
    mark("advance", { image_id: s.id, from });
    this.updateUi();
    this.redraw();
  }

  /** The kernel opened the image shown ahead: its traits are taken without decoding again; what the
   * person did since the swap wins over its objects (and is synced now). */
  private adopt(): void {
    const p = this.advance.finish()!;
    const m = this.model;
    this.dropSaved();
    this.imageBytes = m.get("image"); // the same image the view decoded ahead
    const size = (m.get("image_size") ?? [0, 0]) as [number, number];
    if (size[0] !== this.imageSize[0] || size[1] !== this.imageSize[1]) {
      this.imageSize = [size[0], size[1]];
      this.fitted = true;
      this.fitNow();
    }
    this.imageName = m.get("image_name") ?? "";
    this.categoryScores = m.get("category_scores") ?? [];
    const wire = m.get("objects");
    // whether the kernel sent the objects shown ahead (false: its pre-labels were recomputed meanwhile)
    const same = sameAsWire(this.objects, wire);
    if (p.dirty) {
      const changes: Parameters<CanvasHost["sync"]>[0] = { objects: this.objects.map(toWire), selected: this.selected };
      if (this.task === "classification") changes.category = this.category;
      this.sync(changes);
    } else {
      if (!same) this.objects = fromWire(wire, (e) => this.ui.toast(e));
      this.category = m.get("category") ?? -1;
      if (!this.objects.some((o) => o.id === this.selected)) this.selected = "";
      if (this.selected) this.sync({ selected: this.selected });
    }
    mark("image_confirmed", { image_id: p.to, same, dirty: p.dirty });
    if (p.held) {
      const held = p.held;
      queueMicrotask(() => this.action(held));
    }
  }

  /** The kernel refused the submission (or had nothing to open): back to the submitted image as it was.
   * The image shown ahead goes back to being the next one, with whatever the person did on it. */
  private revert(): void {
    const p = this.advance.finish();
    const sv = this.saved;
    this.saved = null;
    if (!p || !sv) return;
    this.tools.cancel();
    this.tools.cancelPolygon();
    const shown = this.pyramid;
    const slot = sv.slot;
    if (this.nextSlot === slot && slot.id === p.to) {
      slot.pyramid = shown;
      slot.taken = false;
      if (p.dirty) slot.kept = { objects: this.objects, category: this.category };
    } else {
      shown?.close();
    }
    this.masks.clear();
    this.imageId = sv.id;
    this.imageSize = sv.size;
    this.imageName = sv.name;
    this.objects = sv.objects;
    this.history = sv.history;
    this.selected = sv.selected;
    this.picked = sv.picked;
    this.category = sv.category;
    this.categoryScores = sv.categoryScores;
    this.clicks = sv.clicks;
    this.pyramid = sv.pyramid;
    this.pyramidId = sv.pyramidId;
    this.imageBytes = sv.imageBytes;
    this.view = sv.view;
    this.fitted = sv.fitted;
    if (this.fitted) this.fitNow();
    if (!this.pyramid) this.loadImage(sv.imageBytes);
    mark("revert", { image_id: sv.id, from: p.to });
    this.reconcile(); // the submitted image's traits, should the kernel have changed them meanwhile
  }

  private dropSaved(): void {
    const sv = this.saved;
    this.saved = null;
    if (sv?.pyramid && sv.pyramid !== this.pyramid) sv.pyramid.close();
  }

  /** A panel button of this app's group: Finish & Next through the canvas (it may swap at once); while a
   * swap is pending, the image actions are held or done here, about the image shown. */
  private onPanel(d: PanelRequest | undefined): void {
    if (!d || d.claimed || !this.group || d.group !== this.group || this.imageId < 0) return;
    const a = d.action;
    if (a === "submit" || (this.advance.pending && (a === "skip" || a === "back" || a === "predict"))) {
      d.claimed = true;
      this.action(a);
    } else if (this.advance.pending && (a === "accept" || a === "discard")) {
      d.claimed = true;
      runCommand(this, { kind: a === "accept" ? "acceptAll" : "discardAll" });
    }
  }

  // ------------------------------------------------------------------------------ view → model
  private sync(keys: Partial<Pick<CanvasModel, "objects" | "selected" | "label" | "tool" | "brush_size" | "category">>): void {
    if (this.advance.pending) {
      // The model still describes the submitted image: what concerns the image shown ahead waits for
      // the kernel's confirmation (adopt) and must not change the submission meanwhile.
      const { objects, selected, category, ...rest } = keys;
      if (objects !== undefined || category !== undefined) this.advance.edited();
      void selected;
      keys = rest;
      if (!Object.keys(keys).length) return;
    }
    for (const [k, v] of Object.entries(keys)) this.model.set(k as keyof CanvasModel, v as never);
    this.model.save_changes();
  }

  get editable(): boolean {
    return !this.viewOnly && this.imageId >= 0;
  }

  visible(): Obj[] {
    return visibleObjects(this.objects, this.threshold);
  }

  /** `selected`: what the edit selects (default: the selection stays), chosen on purpose when `picked`. */
  commit(objects: Obj[], selected?: string, picked = false): void {
    if (!this.editable) return;
    this.history.push(this.objects);
    this.setObjects(objects, selected, picked);
  }

  private setObjects(objects: readonly Obj[], selected?: string, picked = false): void {
    this.objects = objects;
    let sel = selected ?? this.selected;
    if (!objects.some((o) => o.id === sel && isVisible(o, this.threshold))) sel = "";
    const changes: Parameters<CanvasHost["sync"]>[0] = { objects: objects.map(toWire) };
    if (sel !== this.selected) {
      this.selected = sel;
      this.picked = picked && sel !== "";
      changes.selected = sel;
    }
    this.sync(changes);
    this.updateUi();
    this.redraw();
  }

  /** Select on purpose (a click, Tab, Esc): the object shows it (handles) and a chip relabels it. */
  select(id: string): void {
    if (id === this.selected) {
      if (id && !this.picked) {
        this.picked = true; // a click on the instance a stroke just made
        this.updateUi();
        this.redraw();
      }
      return;
    }
    this.selected = id;
    this.picked = id !== "";
    const o = this.objects.find((x) => x.id === id);
    const changes: Parameters<CanvasHost["sync"]>[0] = { selected: id };
    // one mask per class: selecting a class's mask makes it the class the brush paints
    if (o && this.semantic && this.task === "segmentation" && o.label !== this.label && o.label < this.classes.length) {
      this.label = o.label;
      changes.label = o.label;
    }
    this.sync(changes);
    this.updateUi();
    this.redraw();
  }

  /** The tools of this task (with the click tool while the kernel answers clicks). */
  private tools_(): Tool[] {
    return this.clickTool ? ["click", ...TOOLS_OF[this.task]] : TOOLS_OF[this.task];
  }

  setTool(t: Tool): void {
    if (!this.tools_().includes(t)) return;
    if (t !== "pan") this.prevTool = t;
    if (t !== "polygon") this.tools.cancelPolygon();
    if (t === this.tool) return;
    this.tool = t;
    this.sync({ tool: t });
    this.updateUi();
    this.redraw();
  }

  setBrushSize(n: number): void {
    n = Math.max(1, Math.min(500, Math.round(n)));
    if (n === this.brushSize) return;
    this.brushSize = n;
    this.sync({ brush_size: n });
    this.updateUi();
    this.redraw();
  }

  setLabel(i: number): boolean {
    if (i < 0 || i >= this.classes.length) return false;
    if (i !== this.label) {
      this.label = i;
      this.sync({ label: i });
    }
    return true;
  }

  /** The keys 1–9, 0: the class for new objects. A selection an edit made (the instance a brush stroke
   * just painted) is let go when the class changes, so that the next stroke starts an object of the class
   * chosen instead of growing the last one in its old class. */
  chooseClass(i: number): boolean {
    if (!this.setLabel(i)) return false;
    const sel = this.selected && !this.picked ? this.objects.find((o) => o.id === this.selected) : undefined;
    if (sel && sel.label !== i) this.select("");
    return true;
  }

  /** A class chip: what the keys 1–9 do, and the class of the object selected on purpose (shown with
   * handles). A box just drawn is not selected: clicking a chip to choose the next box's class must not
   * relabel it. */
  private chooseChip(i: number): void {
    if (!this.chooseClass(i)) return;
    if (this.selected && this.picked && this.editable) this.assign();
    this.updateUi();
    this.redraw();
  }

  assign(): void {
    if (!this.selected) return;
    const [W, H] = this.imageSize;
    const r = relabel(this.objects, this.selected, this.label, this.semantic && this.task === "segmentation", W, H, this.threshold);
    if (r.objects.every((o, i) => o === this.objects[i]) && r.objects.length === this.objects.length) return;
    this.commit(r.objects, r.selected, true); // a semantic merge selects the merged mask, still on purpose
  }

  /** Classification: choose a class, and with `submit` move on at once (one-key classification). */
  classify(i: number, submit: boolean): void {
    if (i < 0 || i >= this.classes.length || this.viewOnly) return;
    this.category = i;
    this.sync({ category: i });
    this.updateUi();
    if (submit) this.action("submit");
  }

  topSuggestion(): number {
    let best = -1;
    this.categoryScores.forEach((p, i) => {
      if (i < this.classes.length && (best < 0 || p > this.categoryScores[best])) best = i;
    });
    return best;
  }

  action(action: CanvasAction): void {
    if (this.imageId < 0) {
      this.ui.toast("No image is shown");
      return;
    }
    if (this.tools.busy) return; // finish the drag first
    const verdict = this.advance.onAction(action);
    if (verdict === "drop") {
      this.ui.toast("Still saving the previous image…");
      return;
    }
    if (verdict === "hold") return; // sent about this image once the kernel confirms it
    const from = this.imageId;
    mark("action", { action, image_id: from });
    this.model.send({ type: "action", action, image_id: from });
    if (action === "submit") this.advanceTo(from);
  }

  /** The click tool: the kernel corrects the masks and sends them back as new objects. */
  sendClick(p: Point, positive: boolean): void {
    if (!this.editable || !this.clickTool) return;
    if (this.advance.pending) {
      this.toast("Still saving the previous image…");
      return;
    }
    const [W, H] = this.imageSize;
    if (!(p.x >= 0 && p.y >= 0 && p.x < W && p.y < H)) {
      this.toast("Click on the image");
      return;
    }
    const id = `${this.viewToken}-${++this.clickSeq}`;
    this.clicks = [...this.clicks, { id, x: p.x, y: p.y, positive, pending: true }];
    mark("click", { id, image_id: this.imageId, positive });
    const msg: ClickMessage = { type: "click", id, image_id: this.imageId, x: p.x, y: p.y, positive, label: this.label };
    this.model.send(msg);
    this.updateUi();
    this.redraw();
  }

  /** Replies from the kernel: errors are shown; a click's answer settles its mark (another view's
   * request ids are not ours, and its errors are that view's to show). */
  private onReply(msg: unknown): void {
    const m = msg as { type?: string; message?: unknown; id?: unknown; image_id?: unknown };
    if (m?.type === "stay") {
      if (this.advance.onStay(Number(m.image_id))) this.revert();
      return;
    }
    if (!m || (m.type !== "error" && m.type !== "done")) return;
    const mine = typeof m.id === "string" && m.id.startsWith(`${this.viewToken}-`);
    if (m.id !== undefined && m.id !== null && !mine) return;
    if (mine) {
      const i = this.clicks.findIndex((c) => c.id === m.id);
      if (i >= 0) {
        this.clicks = m.type === "done"
          ? this.clicks.map((c, k) => (k === i ? { ...c, pending: false } : c))
          : this.clicks.filter((_, k) => k !== i);
        mark("click_reply", { id: m.id, ok: m.type === "done" });
        this.updateUi();
        this.redraw();
      }
    }
    if (m.type === "error") this.ui.toast(String(m.message ?? "error"));
  }

  undo(): void {
    if (this.tools.busy || !this.editable) return;
    const prev = this.history.undo(this.objects);
    if (prev) this.setObjects(prev);
  }

  redo(): void {
    if (this.tools.busy || !this.editable) return;
    const next = this.history.redo(this.objects);
    if (next) this.setObjects(next);
  }

  // ------------------------------------------------------------------------------------- view
  setView(v: View): void {
    this.view = v;
    this.fitted = false;
    this.updateZoom();
    this.redraw();
  }

  /** The zoom read-outs only: a pan or zoom must not touch the rest of the DOM at every pointer move
   * (style and layout work per event is what makes panning stutter). */
  private updateZoom(): void {
    this.ui.setZoom(this.view.scale);
    const d = this.ui.root.dataset;
    d.zoom = this.view.scale.toFixed(4);
    // screen = image × scale + offset (CSS px from the canvas' corner), for tests that click on objects
    d.view = [this.view.scale, this.view.ox, this.view.oy].map((v) => +v.toFixed(4)).join(",");
  }

  private fitNow(): void {
    this.view = fitView(this.imageSize[0], this.imageSize[1], this.cssW, this.cssH);
  }

  fit(): void {
    this.fitted = true;
    this.fitNow();
    this.updateUi();
    this.redraw();
  }

  zoom(factor: number, sx = this.cssW / 2, sy = this.cssH / 2): void {
    const fit = fitView(this.imageSize[0], this.imageSize[1], this.cssW, this.cssH);
    this.setView(zoomAt(this.view, factor, sx, sy, zoomLimits(fit)));
  }

  private resize(): void {
    const w = Math.max(0, Math.floor(this.ui.stage.clientWidth));
    const h = Math.max(120, Number(this.model.get("height")) || DEFAULT_HEIGHT);
    const dpr = window.devicePixelRatio || 1;
    this.ui.stage.style.height = `${h}px`;
    if (w === this.cssW && h === this.cssH && dpr === this.dpr) return;
    const c = this.ui.canvas;
    // keep the image centre where it was when the widget changes size (unless it is fitted)
    this.view = panBy(this.view, (w - this.cssW) / 2, (h - this.cssH) / 2);
    this.cssW = w;
    this.cssH = h;
    this.dpr = dpr;
    c.width = Math.max(1, Math.round(w * dpr));
    c.height = Math.max(1, Math.round(h * dpr));
    c.style.width = `${w}px`;
    c.style.height = `${h}px`;
    if (this.fitted) this.fitNow();
    this.updateUi();
    this.redraw();
  }

  // ------------------------------------------------------------------------------ gestures' API
  setLive(objects: readonly Obj[] | null): void {
    this.live = objects;
    this.redraw();
  }

  setDraftBox(d: { box: Box; label: number } | null): void {
    this.draft = d;
    this.redraw();
  }

  toast(text: string): void {
    this.ui.toast(text);
  }

  redraw(): void {
    if (!this.raf) this.raf = requestAnimationFrame(this.frame);
  }

  private readonly frame = (): void => {
    this.raf = 0;
    if ((window.devicePixelRatio || 1) !== this.dpr) this.resize(); // browser zoom; sizes come from the ResizeObserver
    const vis = visibleObjects(this.live ?? this.objects, this.threshold);
    const hover = this.tools.hover;
    const brushing = this.task === "segmentation" && (this.tool === "brush" || this.tool === "eraser") && hover && this.editable;
    const t0 = performance.now();
    const drewImage = drawScene(this.ctx, {
      view: this.view,
      width: this.cssW,
      height: this.cssH,
      dpr: this.dpr,
      task: this.task,
      imageSize: this.imageSize,
      pyramid: this.pyramidId === this.imageId ? this.pyramid : null,
      objects: this.task === "classification" ? [] : vis,
      selected: this.selected,
      handles: this.picked,
      classes: this.classes,
      colors: this.colors,
      draft: this.draft,
      polygon: this.tools.polygon.length ? { points: this.tools.polygon, cursor: hover, label: this.label } : null,
      brush: brushing ? { x: hover!.x, y: hover!.y, r: this.brushSize / 2, erase: this.tool === "eraser" } : null,
      clicks: this.clicks,
    }, this.masks);
    const g = globalThis as { __livetrainCountFrames?: boolean };
    const now = performance.now();
    if (g.__livetrainCountFrames) mark("frame", { t: now, draw_ms: now - t0 });
    if (drewImage) {
      this.ui.root.dataset.ready = "1";
      if (!this.seenImage.has(this.imageId)) {
        this.seenImage.add(this.imageId);
        mark("image", { image_id: this.imageId, t: now });
      }
      const n = pendingCount(this.objects, this.threshold);
      if (n > 0 && !this.seenPrelabels.has(this.imageId)) {
        this.seenPrelabels.add(this.imageId);
        mark("prelabels", { image_id: this.imageId, t: now, n });
      }
    }
  };

  updateUi(): void {
    const pending = pendingCount(this.objects, this.threshold);
    this.ui.update({
      tool: this.tool,
      brushSize: this.brushSize,
      canUndo: this.history.canUndo,
      canRedo: this.history.canRedo,
      pending,
      label: this.label,
      category: this.category,
      categoryScores: this.categoryScores,
      imageName: this.imageName,
      viewOnly: this.viewOnly,
      tools: this.tools_(),
    }, this.classes);
    const d = this.ui.root.dataset;
    d.imageId = String(this.imageId);
    d.objects = String(this.visible().length);
    d.prelabels = String(pending);
    d.tool = this.tool;
    this.updateZoom();
    d.selected = this.selected;
    d.picked = this.picked ? "1" : "0";
    d.label = String(this.label);
    d.category = String(this.category);
    d.clicks = String(this.clicks.filter((c) => !c.pending).length);
    d.clicksPending = String(this.clicks.filter((c) => c.pending).length);
    d.viewOnly = this.viewOnly ? "1" : "0";
    // "1" while the image shown ahead waits for the kernel's confirmation; "next": its id once decoded
    d.pending = this.advance.pending ? "1" : "0";
    const s = this.nextSlot;
    d.next = s && s.pyramid && !s.taken ? String(s.id) : "";
  }

  // ---------------------------------------------------------------------------------- events
  private on<K extends keyof HTMLElementEventMap>(
    target: HTMLElement, type: K, f: (e: HTMLElementEventMap[K]) => void, opts?: AddEventListenerOptions,
  ): void {
    target.addEventListener(type, f as EventListener, opts);
    this.cleanups.push(() => target.removeEventListener(type, f as EventListener, opts));
  }

  private point(e: MouseEvent): { x: number; y: number } {
    const r = this.ui.canvas.getBoundingClientRect();
    return { x: e.clientX - r.left, y: e.clientY - r.top };
  }

  private listen(): void {
    const canvas = this.ui.canvas;
    const root = this.ui.root;
    this.on(canvas, "pointerdown", (e) => {
      root.focus({ preventScroll: true });
      if (this.tools.down(this.point(e), e.button, { alt: e.altKey, shift: e.shiftKey })) {
        try {
          canvas.setPointerCapture(e.pointerId);
        } catch {
          // a synthetic or already released pointer: the gesture still works while over the canvas
        }
        e.preventDefault();
      }
      this.updateUi();
    });
    this.on(canvas, "pointermove", (e) => {
      const p = this.point(e);
      this.tools.move(p);
      if (!this.tools.busy) canvas.style.cursor = this.tools.cursorAt(p);
    });
    this.on(canvas, "pointerup", (e) => {
      this.tools.up(this.point(e));
      this.updateUi();
    });
    this.on(canvas, "pointercancel", () => this.tools.cancel());
    this.on(canvas, "pointerleave", () => {
      if (!this.tools.busy) {
        this.tools.hover = null;
        this.redraw();
      }
    });
    this.on(canvas, "contextmenu", (e) => e.preventDefault());
    this.on(canvas, "wheel", (e) => {
      // As image viewers inside notebooks do: the wheel scrolls the page (a canvas that swallowed it
      // would trap the notebook's scrolling under the pointer); Ctrl/⌘ + wheel zooms, and so does a
      // trackpad's pinch, which browsers send as a wheel event with ctrlKey set.
      if (!wheelZooms(e)) {
        this.hintWheel();
        return;
      }
      e.preventDefault(); // the browser's own Ctrl + wheel would zoom the whole page
      const p = this.point(e);
      const dy = e.deltaMode === 1 ? e.deltaY * 16 : e.deltaMode === 2 ? e.deltaY * 400 : e.deltaY;
      this.zoom(Math.exp(-Math.max(-300, Math.min(300, dy)) * 0.002), p.x, p.y);
    }, { passive: false });
    this.on(root, "keydown", (e) => this.onKey(e));
    // The app's other controls (panel buttons and settings, plots) give the keys back to the canvas.
    // Capture phase: a control may stop the event, or remove itself from the page, while handling it.
    const onAppPointerUp = (e: PointerEvent) => this.onAppPointerUp(e);
    document.addEventListener("pointerup", onAppPointerUp, true);
    this.cleanups.push(() => document.removeEventListener("pointerup", onAppPointerUp, true));
  }

  /** Once per view, while the person works on the canvas: how to zoom, now that the wheel scrolls. */
  private hintWheel(): void {
    if (this.wheelHinted || document.activeElement !== this.ui.root) return;
    this.wheelHinted = true;
    this.ui.toast("The wheel scrolls the page; Ctrl + wheel (⌘ on a Mac) or a pinch zooms");
  }

  /** A click in this app (the LiveAnnotator box holding this canvas) outside the canvas: a panel button,
   * a setting, the plots. Focus would stay on the control clicked, so the canvas' keys would stop
   * working (Y after Finish & Next did nothing) and Enter would press that button again (Back, Back):
   * once the click has done its work, the keyboard goes back to the canvas. Controls that take typing
   * keep it, and keyboard use of the panel (Tab to a button, Enter) is left alone. */
  private onAppPointerUp(e: PointerEvent): void {
    const root = this.ui.root;
    const target = e.target instanceof Element ? e.target : null;
    if (!target || root.contains(target) || takesTyping(target)) return;
    const app = root.closest(APP_SELECTOR);
    if (!app || !app.contains(target)) return;
    // after the click (and a checkbox's change) this pointerup leads to has been handled
    setTimeout(() => {
      if (!root.isConnected || takesTyping(document.activeElement)) return;
      root.focus({ preventScroll: true });
    }, 0);
  }

  private onKey(e: KeyboardEvent): void {
    const t = e.target as HTMLElement | null;
    if (t && t !== this.ui.root && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    const cmd = commandFor(e, { task: this.task, polygon: this.tools.polygon.length > 0 });
    // While the canvas has focus, no key reaches the notebook: its command-mode shortcuts (A, B,
    // D D, ...) would otherwise edit the notebook under the user.
    e.stopPropagation();
    if (!cmd) return;
    e.preventDefault();
    if (e.repeat && !repeatable(cmd, this.task)) return;
    runCommand(this, cmd);
  }
}
