// The live panel: what the trainer is doing in a labeler's words, model quality, progress, the
// buttons of the labeling loop and the prediction settings. Everything shown comes from traits, so a
// reloaded page or a saved notebook shows the last state; buttons send {type: "action"} messages.
import type { AnyModel, RenderProps } from "@anywidget/types";
import type { PanelAction, PanelModel } from "../protocol";
import "./panel.css";

type Model = AnyModel<PanelModel>;

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  cls: string,
  parent?: HTMLElement,
  text?: string,
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  node.className = cls;
  if (text !== undefined) node.textContent = text; // never innerHTML: names come from users
  parent?.appendChild(node);
  return node;
}

/** Quality as a labeler reads it: a percentage, or a dash until the first pre-label was judged. */
export function formatQuality(q: number | null, n: number): string {
  if (q === null || q === undefined || !Number.isFinite(q)) return "–";
  return `${Math.round(q * 100)}% (${n} judged)`;
}

/** Timing marks for the browser tests and benchmarks (the canvas adds when images and pre-labels show). */
function mark(action: string): void {
  const g = globalThis as { __livetrainTimings?: object[] };
  (g.__livetrainTimings ??= []).push({ event: "action", action, source: "panel", t: performance.now() });
}

const BUTTONS: [PanelAction, string, string][] = [
  ["submit", "Finish & Next", "Save this image's labels, train on them, open the next image (Enter)"],
  ["skip", "Skip", "Open the next image without saving (Space)"],
  ["back", "Back", "Reopen the previous image with its saved labels (Shift+Space)"],
  ["predict", "Predict", "Ask the model for fresh pre-labels (Shift+P)"],
  ["accept", "Accept pre-labels", "Accept every visible pre-label (Y)"],
  ["discard", "Discard pre-labels", "Remove the pre-labels and label by hand (X)"],
];

function render({ model, el: root }: RenderProps<PanelModel>) {
  const m = model as Model;
  root.classList.add("lt-panel");

  const top = el("div", "lt-panel-row lt-panel-top", root);
  const dot = el("span", "lt-dot", top);
  const status = el("span", "lt-status", top);
  const busy = el("span", "lt-busy", top);
  const qualityBox = el("span", "lt-metric", top);
  el("span", "lt-metric-label", qualityBox, "Model quality ");
  const quality = el("strong", "lt-quality", qualityBox);
  const progressBox = el("span", "lt-metric", top);
  el("span", "lt-metric-label", progressBox, "Labeled ");
  const progress = el("strong", "lt-progress", progressBox);
  const bar = el("span", "lt-bar", progressBox);
  const barFill = el("span", "lt-bar-fill", bar);

  const buttons = el("div", "lt-panel-row lt-buttons", root);
  const byAction = new Map<PanelAction, HTMLButtonElement>();
  for (const [action, label, title] of BUTTONS) {
    const b = el("button", `lt-btn lt-btn-${action}`, buttons, label);
    b.title = title;
    b.dataset.action = action;
    b.addEventListener("click", () => {
      mark(action);
      m.send({ type: "action", action });
    });
    byAction.set(action, b);
  }
  const trainBtn = el("button", "lt-btn lt-btn-train", buttons);
  trainBtn.addEventListener("click", () =>
    m.send({ type: "action", action: m.get("training") ? "stop" : "start" }),
  );

  const settings = el("div", "lt-panel-row lt-settings", root);
  const thrLabel = el("label", "lt-setting lt-threshold", settings);
  el("span", "", thrLabel, "Confidence threshold ");
  const thr = el("input", "lt-threshold-input", thrLabel);
  thr.type = "range";
  thr.min = "0";
  thr.max = "1";
  thr.step = "0.01";
  const thrValue = el("span", "lt-threshold-value", thrLabel);
  thr.addEventListener("input", () => {
    thrValue.textContent = Number(thr.value).toFixed(2);
  });
  thr.addEventListener("change", () => {
    m.set("threshold", Number(thr.value));
    m.save_changes();
  });
  const semLabel = el("label", "lt-setting lt-semantic", settings);
  const sem = el("input", "", semLabel);
  sem.type = "checkbox";
  el("span", "", semLabel, " Instance masks (off: one mask per class)");
  sem.addEventListener("change", () => {
    m.set("semantic", !sem.checked);
    m.save_changes();
  });
  const skipLabel = el("label", "lt-setting lt-skip-labeled", settings);
  const skip = el("input", "", skipLabel);
  skip.type = "checkbox";
  el("span", "", skipLabel, " Don't auto-predict when the image already has labels");
  skip.addEventListener("change", () => {
    m.set("skip_predict_if_labeled", skip.checked);
    m.save_changes();
  });

  const error = el("div", "lt-error", root);
  const foot = el("div", "lt-panel-row lt-foot", root);
  const position = el("span", "lt-position", foot);
  const stats = el("span", "lt-stats", foot);
  const toast = el("div", "lt-toast", root);
  let toastTimer: ReturnType<typeof setTimeout> | undefined;

  const update = () => {
    const phase = m.get("phase");
    const task = m.get("task");
    status.textContent = m.get("status");
    dot.dataset.phase = phase;
    busy.textContent = m.get("busy");
    const q = m.get("quality");
    quality.textContent = formatQuality(q, m.get("evaluated"));
    const labeled = m.get("labeled");
    const total = m.get("total");
    progress.textContent = `${labeled} / ${total}`;
    barFill.style.width = `${total > 0 ? Math.min(100, (100 * labeled) / total) : 0}%`;
    const err = m.get("error");
    error.textContent = err;
    error.hidden = !err;
    position.textContent = m.get("position");
    const loss = m.get("loss");
    const ms = m.get("predict_ms");
    const parts = [`step ${m.get("step")}`];
    if (loss !== null && Number.isFinite(loss)) parts.push(`loss ${loss.toFixed(3)}`);
    if (ms !== null && Number.isFinite(ms)) parts.push(`pre-labels in ${Math.round(ms)} ms`);
    stats.textContent = parts.join(" · ");
    const training = m.get("training");
    trainBtn.textContent = training ? "Stop training" : "Start training";
    trainBtn.dataset.action = training ? "stop" : "start";
    const n = m.get("prelabels");
    byAction.get("accept")!.disabled = n === 0;
    byAction.get("discard")!.disabled = n === 0;
    byAction.get("back")!.disabled = !m.get("can_back");
    byAction.get("accept")!.hidden = task === "classification";
    if (document.activeElement !== thr) {
      thr.value = String(m.get("threshold"));
      thrValue.textContent = m.get("threshold").toFixed(2);
    }
    thrLabel.hidden = task !== "detection";
    sem.checked = !m.get("semantic");
    semLabel.hidden = task !== "segmentation";
    skip.checked = m.get("skip_predict_if_labeled");
    // hooks for the browser tests
    root.dataset.phase = phase;
    root.dataset.quality = q === null ? "" : String(q);
    root.dataset.labeled = String(labeled);
    root.dataset.evaluated = String(m.get("evaluated"));
  };
  const onMsg = (msg: unknown) => {
    const content = msg as { type?: string; message?: string };
    if (content?.type !== "error" || typeof content.message !== "string") return;
    toast.textContent = content.message;
    toast.classList.add("lt-toast-shown");
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => toast.classList.remove("lt-toast-shown"), 5000);
  };
  m.on("change", update);
  m.on("msg:custom", onMsg);
  update();
  return () => {
    m.off("change", update);
    m.off("msg:custom", onMsg);
    clearTimeout(toastTimer);
  };
}

export default { render };
