// The DOM around the drawing surface: toolbar, class chips, classification row, banner, toast and
// the key-map overlay. All user-visible text goes through textContent (class names, image names and
// messages come from users and kernels, and may contain markup).

import type { Task } from "../protocol";
import { keyHelp, type Tool, ZOOM_STEP } from "./keys";
import { el } from "../dom";
import { colorOf } from "./render";

/** A toolbar button. Not focusable: keyboard focus stays on the canvas root, so shortcuts keep
 * working after a click. */
function button(label: string, title: string, onClick: () => void, cls = ""): HTMLButtonElement {
  const b = el("button", `ltc-btn ${cls}`.trim(), label);
  b.type = "button";
  b.title = title;
  b.tabIndex = -1;
  // a click must not move the focus off the canvas root (the keys would stop working)
  b.addEventListener("mousedown", (e) => e.preventDefault());
  b.addEventListener("click", onClick);
  return b;
}

export interface UiCallbacks {
  tool(t: Tool): void;
  brushSize(n: number): void;
  fit(): void;
  /** a zoom button: `factor` > 1 zooms in, about the middle of the view */
  zoom(factor: number): void;
  undo(): void;
  redo(): void;
  acceptAll(): void;
  discardAll(): void;
  chip(index: number): void;
  classify(index: number): void;
  help(): void;
}

const TOOL_BUTTONS: Record<Task, [Tool, string, string][]> = {
  detection: [
    ["box", "Box", "draw, select, move and resize boxes"],
    ["pan", "Pan (H)", "drag to move the view"],
  ],
  segmentation: [
    ["click", "Click (K)", "click adds to the chosen class's mask, Shift+click or right click removes: the model redraws it"],
    ["box", "Select (S)", "click a mask to select it"],
    ["brush", "Brush (B)", "paint into the selected mask, or a new one"],
    ["eraser", "Eraser (E)", "erase from the selected mask, or from every mask under it"],
    ["polygon", "Polygon (P)", "click vertices; Enter or double-click closes"],
    ["fill", "Fill (F)", "click inside a hole of the selected mask"],
    ["pan", "Pan (H)", "drag to move the view"],
  ],
  classification: [],
};

export interface UiState {
  tool: Tool;
  brushSize: number;
  canUndo: boolean;
  canRedo: boolean;
  pending: number;
  label: number;
  category: number;
  categoryScores: readonly number[];
  imageName: string;
  viewOnly: boolean;
  /** the tools offered now (the click tool only in the correction mode) */
  tools: readonly Tool[];
}

export class Ui {
  readonly root: HTMLDivElement;
  readonly stage: HTMLDivElement;
  readonly canvas: HTMLCanvasElement;
  private readonly toolBtns = new Map<Tool, HTMLButtonElement>();
  private readonly brushInput: HTMLInputElement | null = null;
  private readonly brushValue: HTMLSpanElement | null = null;
  private readonly zoomLabel: HTMLSpanElement;
  private readonly undoBtn: HTMLButtonElement;
  private readonly redoBtn: HTMLButtonElement;
  private readonly acceptBtn: HTMLButtonElement | null = null;
  private readonly discardBtn: HTMLButtonElement | null = null;
  private readonly nameLabel: HTMLSpanElement;
  private readonly banner: HTMLDivElement;
  private readonly toastEl: HTMLDivElement;
  private readonly helpEl: HTMLDivElement;
  private readonly chipsEl: HTMLDivElement;
  private readonly suggestEl: HTMLDivElement | null = null;
  private chipBtns: HTMLButtonElement[] = [];
  private toastTimer: ReturnType<typeof setTimeout> | undefined;
  private classesKey = "";
  private clickTool = false;

  constructor(readonly task: Task, private readonly cb: UiCallbacks) {
    this.root = el("div", `ltc-root ltc-${task}`);
    this.root.tabIndex = 0;
    // Lumino (JupyterLab, Notebook 7) skips its keyboard shortcuts for events from inside this.
    this.root.dataset.lmSuppressShortcuts = "true";

    const bar = el("div", "ltc-toolbar");
    const tools = el("div", "ltc-group");
    for (const [t, label, title] of TOOL_BUTTONS[task]) {
      const b = button(label, title, () => cb.tool(t), "ltc-tool");
      b.dataset.tool = t;
      b.hidden = t === "click"; // until the kernel offers it
      this.toolBtns.set(t, b);
      tools.append(b);
    }
    if (tools.childElementCount) bar.append(tools);
    if (task === "segmentation") {
      const g = el("label", "ltc-group ltc-brush", "Size ");
      g.title = "brush / eraser diameter in image pixels ([ and ])";
      this.brushInput = el("input", "ltc-range");
      this.brushInput.type = "range";
      this.brushInput.min = "1";
      this.brushInput.max = "200";
      this.brushInput.addEventListener("input", () => cb.brushSize(Number(this.brushInput!.value)));
      this.brushInput.addEventListener("change", () => this.root.focus({ preventScroll: true }));
      this.brushValue = el("span", "ltc-num");
      g.append(this.brushInput, this.brushValue);
      bar.append(g);
    }
    const view = el("div", "ltc-group");
    this.zoomLabel = el("span", "ltc-num ltc-zoom");
    // Buttons as well as Ctrl + wheel: the plain wheel scrolls the notebook (host.ts), so a mouse
    // without a Ctrl key in reach, or a touch screen, still zooms.
    view.append(
      button("−", "zoom out (−, or Ctrl + wheel)", () => cb.zoom(1 / ZOOM_STEP), "ltc-zoom-out"),
      this.zoomLabel,
      button("+", "zoom in (+, or Ctrl + wheel)", () => cb.zoom(ZOOM_STEP), "ltc-zoom-in"),
      button("Fit", "fit the image to the view (Home)", cb.fit),
    );
    bar.append(view);
    const hist = el("div", "ltc-group");
    this.undoBtn = button("↶", "undo (Ctrl+Z)", cb.undo);
    this.redoBtn = button("↷", "redo (Ctrl+Shift+Z)", cb.redo);
    hist.append(this.undoBtn, this.redoBtn);
    if (task !== "classification") bar.append(hist); // a class choice is undone by choosing another
    if (task !== "classification") {
      const pre = el("div", "ltc-group");
      this.acceptBtn = button("Accept all (Y)", "accept every shown pre-label as your own", cb.acceptAll, "ltc-accept");
      this.discardBtn = button("Discard (X)", "remove all pre-labels", cb.discardAll);
      pre.append(this.acceptBtn, this.discardBtn);
      bar.append(pre);
    }
    this.nameLabel = el("span", "ltc-name");
    bar.append(this.nameLabel, button("?", "keyboard shortcuts", cb.help, "ltc-help-btn"));

    this.stage = el("div", "ltc-stage");
    this.canvas = el("canvas", "ltc-canvas");
    this.banner = el("div", "ltc-banner");
    this.toastEl = el("div", "ltc-toast");
    this.toastEl.setAttribute("role", "status");
    this.helpEl = el("div", "ltc-help");
    this.stage.append(this.canvas, this.banner, this.toastEl, this.helpEl);
    this.buildHelp();

    this.chipsEl = el("div", task === "classification" ? "ltc-classes" : "ltc-chips");
    this.root.append(bar, this.stage);
    if (task === "classification") {
      this.suggestEl = el("div", "ltc-suggest");
      this.root.append(this.suggestEl);
    }
    this.root.append(this.chipsEl);
    // clicks anywhere in the widget give it the keyboard (buttons do not take focus themselves)
    this.root.addEventListener("click", (e) => {
      if (!(e.target instanceof HTMLInputElement)) this.root.focus({ preventScroll: true });
    });
  }

  /** The click tool is offered (or no longer): its button and its line in the key map. */
  setClickTool(on: boolean): void {
    if (on === this.clickTool) return;
    this.clickTool = on;
    this.buildHelp();
  }

  private buildHelp(): void {
    this.helpEl.replaceChildren();
    const title = el("div", "ltc-help-title", "Keyboard (click the canvas first)");
    const table = el("table", "ltc-help-table");
    for (const [keys, what] of keyHelp(this.task, this.clickTool)) {
      const tr = el("tr", "");
      tr.append(el("th", "", keys), el("td", "", what));
      table.append(tr);
    }
    const close = button("Close", "close (Esc)", () => this.showHelp(false));
    this.helpEl.append(title, table, close);
  }

  showHelp(on?: boolean): void {
    this.helpEl.classList.toggle("ltc-show", on ?? !this.helpEl.classList.contains("ltc-show"));
  }

  get helpShown(): boolean {
    return this.helpEl.classList.contains("ltc-show");
  }

  /** Class chips (detection / segmentation) or class buttons (classification), with hotkeys. */
  setClasses(classes: readonly string[], colors: readonly string[]): void {
    const key = JSON.stringify([classes, colors]);
    if (key === this.classesKey) return;
    this.classesKey = key;
    this.chipsEl.replaceChildren();
    this.chipBtns = classes.map((name, i) => {
      const hot = i < 10 ? `${(i + 1) % 10}` : "";
      const b = button("", hot ? `${name} (key ${hot})` : name, () =>
        this.task === "classification" ? this.cb.classify(i) : this.cb.chip(i), "ltc-chip");
      const sw = el("span", "ltc-swatch");
      sw.style.background = colorOf(colors, i);
      b.append(sw);
      if (hot) b.append(el("kbd", "ltc-key", hot));
      b.append(el("span", "ltc-chip-name", name));
      b.dataset.index = String(i);
      this.chipsEl.append(b);
      return b;
    });
  }

  update(s: UiState, classes: readonly string[]): void {
    for (const [t, b] of this.toolBtns) {
      b.classList.toggle("ltc-on", t === s.tool);
      b.disabled = s.viewOnly && t !== "pan" && t !== "box";
      b.hidden = !s.tools.includes(t);
    }
    if (this.brushInput && this.brushValue) {
      if (document.activeElement !== this.brushInput) this.brushInput.value = String(s.brushSize);
      this.brushValue.textContent = `${s.brushSize} px`;
    }
    this.undoBtn.disabled = !s.canUndo || s.viewOnly;
    this.redoBtn.disabled = !s.canRedo || s.viewOnly;
    if (this.acceptBtn && this.discardBtn) {
      this.acceptBtn.disabled = this.discardBtn.disabled = s.pending === 0 || s.viewOnly;
      this.acceptBtn.textContent = s.pending ? `Accept all ${s.pending} (Y)` : "Accept all (Y)";
    }
    this.nameLabel.textContent = s.imageName;
    this.nameLabel.title = s.imageName;
    const chosen = this.task === "classification" ? s.category : s.label;
    this.chipBtns.forEach((b, i) => {
      b.classList.toggle("ltc-on", i === chosen);
      b.disabled = s.viewOnly && this.task === "classification";
    });
    if (this.suggestEl) this.updateSuggestions(s.categoryScores, classes);
  }

  /** Top-3 class suggestions with percentage bars; the first is the one Enter takes. */
  private updateSuggestions(scores: readonly number[], classes: readonly string[]): void {
    const box = this.suggestEl!;
    box.replaceChildren();
    const top = scores
      .map((p, i) => [p, i] as const)
      .filter(([p]) => Number.isFinite(p))
      .sort((a, b) => b[0] - a[0])
      .slice(0, 3);
    this.chipBtns.forEach((b, i) => b.classList.toggle("ltc-suggested", top.length > 0 && top[0][1] === i));
    if (!top.length) return;
    box.append(el("span", "ltc-suggest-title", "Suggested"));
    top.forEach(([p, i], rank) => {
      const row = el("div", rank === 0 ? "ltc-sugg ltc-sugg-top" : "ltc-sugg");
      const bar = el("span", "ltc-bar");
      const fill = el("span", "ltc-bar-fill");
      fill.style.width = `${Math.max(0, Math.min(100, p * 100)).toFixed(1)}%`;
      bar.append(fill);
      row.append(el("span", "ltc-sugg-name", classes[i] ?? `class ${i}`), bar, el("span", "ltc-num", `${(p * 100).toFixed(0)}%`));
      row.title = rank === 0 ? "the suggestion: Enter takes it" : "";
      row.addEventListener("click", () => this.cb.classify(i));
      box.append(row);
    });
  }

  setZoom(scale: number): void {
    const text = `${Math.round(scale * 100)}%`;
    if (this.zoomLabel.textContent !== text) this.zoomLabel.textContent = text;
  }

  setBanner(text: string): void {
    this.banner.textContent = text;
    this.banner.classList.toggle("ltc-show", !!text);
  }

  toast(text: string, ms = 4000): void {
    this.toastEl.textContent = text;
    this.toastEl.classList.add("ltc-show");
    clearTimeout(this.toastTimer);
    this.toastTimer = setTimeout(() => this.toastEl.classList.remove("ltc-show"), ms);
  }

  destroy(): void {
    clearTimeout(this.toastTimer);
    this.root.remove();
  }
}
