// Front end of the live plots (widgets/plots.py): draws the `data` / `meta` traits with uPlot.
//
// Python pushes at most ~4 updates a second; every trait change only marks the view dirty and one
// requestAnimationFrame redraws (so a burst of changes, or a hidden tab, costs one draw). Charts are
// created once per layout and then fed with setData; a ResizeObserver follows the container's width.

import type { RenderProps } from "@anywidget/types";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { put } from "../dom";
import "./plots.css";
import type { PlotModel } from "../protocol";
import { buildSlots, type Live, type Meta, type SlotSpec, type Theme } from "./charts";
import { decodeAll, type Series } from "./decode";
import { formatValue, lastIndex, splitHeight } from "./shape";

let views = 0;

/** One chart area: a subtitle, the uPlot chart (or an empty-state message in its place). */
class Slot {
  readonly el: HTMLDivElement;
  private readonly subtitle: HTMLDivElement;
  private readonly host: HTMLDivElement;
  private readonly empty: HTMLDivElement;
  private plot: uPlot | null = null;
  private key = "";
  private size = [0, 0];

  constructor(parent: HTMLElement) {
    this.el = put(parent, "div", "ltw-plot-slot");
    this.subtitle = put(this.el, "div", "ltw-plot-subtitle");
    this.host = put(this.el, "div", "ltw-plot-chart");
    this.empty = put(this.el, "div", "ltw-plot-empty");
  }

  update(spec: SlotSpec, width: number, height: number): void {
    this.subtitle.textContent = spec.subtitle;
    if (spec.data === null) {
      // one message for the whole widget: a second empty slot (and its subtitle) is not shown at all
      this.el.hidden = !spec.empty;
      this.subtitle.hidden = true;
      this.empty.textContent = spec.empty;
      this.empty.hidden = false;
      this.empty.style.height = `${height}px`;
      this.host.hidden = true;
      return;
    }
    this.el.hidden = false;
    this.subtitle.hidden = !spec.subtitle;
    this.empty.hidden = true;
    this.host.hidden = false;
    if (this.plot === null || this.key !== spec.key) {
      this.plot?.destroy();
      this.plot = new uPlot(spec.options(width, height), spec.data, this.host);
      this.key = spec.key;
      this.size = [width, height];
    } else {
      if (this.size[0] !== width || this.size[1] !== height) {
        this.plot.setSize({ width, height });
        this.size = [width, height];
      }
      this.plot.setData(spec.data);
    }
    // While the pointer is elsewhere the legend shows the newest values instead of dashes.
    const last = lastIndex(spec.data.slice(1) as (number | null)[][]);
    if (this.plot.cursor.left === undefined || this.plot.cursor.left < 0) {
      if (last !== null) this.plot.setLegend({ idx: last });
    }
  }

  destroy(): void {
    this.plot?.destroy();
    this.plot = null;
    this.el.remove();
  }
}

class PlotView {
  private readonly root: HTMLDivElement;
  private readonly title: HTMLDivElement;
  private readonly summary: HTMLDivElement;
  private readonly key: HTMLDivElement;
  private readonly body: HTMLDivElement;
  private slots: Slot[] = [];
  private readonly live: Live = { bands: [], step: 0, raw: [] };
  private readonly sync = `ltw-plot-${++views}`;
  private frame = 0;
  private decodedFrom: unknown = undefined;
  private series: Series = {};
  private readonly observer: ResizeObserver;
  private readonly onChange = (): void => this.schedule();

  constructor(
    private readonly model: RenderProps<PlotModel>["model"],
    el: HTMLElement,
  ) {
    this.root = put(el, "div", "ltw-plot");
    const header = put(this.root, "div", "ltw-plot-header");
    this.title = put(header, "div", "ltw-plot-title");
    this.summary = put(header, "div", "ltw-plot-summary");
    this.key = put(this.root, "div", "ltw-plot-key");
    this.body = put(this.root, "div", "ltw-plot-body");
    for (const name of ["data", "meta", "title", "height", "kind"])
      model.on(`change:${name}`, this.onChange);
    this.observer = new ResizeObserver(this.onChange);
    this.observer.observe(this.root);
    this.schedule();
  }

  schedule(): void {
    if (this.frame === 0) this.frame = requestAnimationFrame(() => this.draw());
  }

  private readonly colors: Theme = { text: "#333", grid: "rgba(128, 128, 128, 0.22)" };

  private theme(): Theme {
    this.colors.text = getComputedStyle(this.root).color || "#333";
    return this.colors;
  }

  private draw(): void {
    this.frame = 0;
    const m = this.model;
    const kind = m.get("kind");
    const meta: Meta = (m.get("meta") as Meta | null) ?? {};
    const data = m.get("data");
    if (data !== this.decodedFrom) {
      this.series = decodeAll(data);
      this.decodedFrom = data;
    }
    const specs = buildSlots(kind, this.series, meta, this.theme(), this.live, this.sync);
    this.title.textContent = m.get("title") || "";
    this.renderHeader(kind, meta);
    const width = Math.floor(this.body.clientWidth);
    if (width <= 0) return; // not laid out yet (hidden tab, collapsed output): the observer calls back
    while (this.slots.length > specs.length) this.slots.pop()?.destroy();
    while (this.slots.length < specs.length) this.slots.push(new Slot(this.body));
    const total = Math.max(120, m.get("height") || 300);
    const heights = splitHeight(total, specs.map((s) => s.weight));
    if (specs.every((s) => s.data === null)) heights[0] = total; // the empty message fills the widget
    specs.forEach((spec, i) => this.slots[i].update(spec, width, heights[i]));
  }

  /** The line under the title: the latest figures in words, and the key of the plateau shading. */
  private renderHeader(kind: string, meta: Meta): void {
    const n = (k: string): number | null => (typeof meta[k] === "number" ? (meta[k] as number) : null);
    let summary = "";
    if (kind === "loss") {
      const step = n("step");
      summary = step ? `step ${step}` : "";
      if (meta.paused === true) summary += " · paused: the loss stopped improving; label more images to resume";
    } else if (kind === "sampler") {
      const samples = n("samples");
      if (samples) summary = `${samples} labeled · batches of ${n("batch_size") ?? "?"}`;
    } else if (kind === "quality") {
      const judged = n("judged");
      const ema = n("ema");
      if (judged) summary = `${judged} judged${ema === null ? "" : ` · moving average ${formatValue(ema)}`}`;
    }
    this.summary.textContent = summary;
    this.summary.classList.toggle("ltw-plot-paused", kind === "loss" && meta.paused === true);
    const showKey = kind === "loss" && this.live.bands.length > 0;
    this.key.replaceChildren();
    this.key.hidden = !showKey;
    if (showKey) {
      put(this.key, "span", "ltw-plot-swatch ltw-plot-band", "");
      put(this.key, "span", "", "loss stopped improving");
      put(this.key, "span", "ltw-plot-swatch ltw-plot-pause", "");
      put(this.key, "span", "", "training paused");
    }
  }

  destroy(): void {
    for (const name of ["data", "meta", "title", "height", "kind"]) this.model.off(`change:${name}`, this.onChange);
    this.observer.disconnect();
    if (this.frame !== 0) cancelAnimationFrame(this.frame);
    this.frame = 0;
    for (const s of this.slots) s.destroy();
    this.slots = [];
    this.root.remove();
  }
}

function render({ model, el }: RenderProps<PlotModel>): () => void {
  const view = new PlotView(model, el);
  return () => view.destroy();
}

export default { render };
