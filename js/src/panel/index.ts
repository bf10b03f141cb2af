// The live panel: what the trainer is doing in a labeler's words, model quality, progress, the
// buttons of the labeling loop and the prediction settings. Everything shown comes from traits, so a
// reloaded page or a saved notebook shows the last state; buttons send {type: "action"} messages.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { PANEL_EVENT, type PanelAction, type PanelModel, type PanelRequest } from "../protocol";
import { mark, put, toaster } from "../dom";
import "./panel.css";

type Model = AnyModel<PanelModel>;

/** Quality as a labeler reads it: a percentage, or a dash until the first pre-label was judged. */
export function formatQuality(q: number | null, n: number): string {
  if (q === null || q === undefined || !Number.isFinite(q)) return "–";
  return `${Math.round(q * 100)}% (${n} judged)`;
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

  const top = put(root, "div", "lt-panel-row lt-panel-top");
  const dot = put(top, "span", "lt-dot");
  const status = put(top, "span", "lt-status");
  const busy = put(top, "span", "lt-busy");
  const qualityBox = put(top, "span", "lt-metric");
  put(qualityBox, "span", "lt-metric-label", "Model quality ");
  const quality = put(qualityBox, "strong", "lt-quality");
  const progressBox = put(top, "span", "lt-metric");
  put(progressBox, "span", "lt-metric-label", "Labeled ");
  const progress = put(progressBox, "strong", "lt-progress");
  const bar = put(progressBox, "span", "lt-bar");
  const barFill = put(bar, "span", "lt-bar-fill");

  const buttons = put(root, "div", "lt-panel-row lt-buttons");
  const byAction = new Map<PanelAction, HTMLButtonElement>();
  for (const [action, label, title] of BUTTONS) {
    const b = put(buttons, "button", `lt-btn lt-btn-${action}`, label);
    b.title = title;
    b.dataset.action = action;
    b.addEventListener("click", () => {
      // The canvas of this app first: it may show the next image at once, and during a pending
      // Finish & Next it holds the actions about the image shown (see canvas/advance.ts).
      const group = m.get("group");
      if (group) {
        const detail: PanelRequest = { group, action, claimed: false };
        window.dispatchEvent(new CustomEvent(PANEL_EVENT, { detail }));
        if (detail.claimed) return;
      }
      mark("action", { action, source: "panel" });
      m.send({ type: "action", action });
    });
    byAction.set(action, b);
  }
  const trainBtn = put(buttons, "button", "lt-btn lt-btn-train");
  trainBtn.addEventListener("click", () =>
    m.send({ type: "action", action: m.get("training") ? "stop" : "start" }),
  );

  const settings = put(root, "div", "lt-panel-row lt-settings");
  const thrLabel = put(settings, "label", "lt-setting lt-threshold");
  put(thrLabel, "span", "", "Confidence threshold ");
  const thr = put(thrLabel, "input", "lt-threshold-input");
  thr.type = "range";
  thr.min = "0";
  thr.max = "1";
  thr.step = "0.01";
  const thrValue = put(thrLabel, "span", "lt-threshold-value");
  thr.addEventListener("input", () => {
    thrValue.textContent = Number(thr.value).toFixed(2);
  });
  thr.addEventListener("change", () => {
    // a threshold of one's own: the history's choice stops applying until "auto" is ticked again
    m.set("auto_threshold", false);
    m.set("threshold", Number(thr.value));
    m.save_changes();
  });
  const autoLabel = put(settings, "label", "lt-setting lt-auto-threshold");
  const auto = put(autoLabel, "input", "");
  auto.type = "checkbox";
  autoLabel.title = "Choose the threshold (per class) that saved the most time on the images you submitted lately";
  put(autoLabel, "span", "", " auto");
  auto.addEventListener("change", () => {
    m.set("auto_threshold", auto.checked);
    m.save_changes();
  });
  const thrInfo = put(settings, "span", "lt-threshold-info");
  /** A labelled checkbox that writes `checked` (through `toTrait`) into a boolean trait. */
  const checkbox = (cls: string, text: string, trait: "semantic" | "skip_predict_if_labeled",
    toTrait: (checked: boolean) => boolean) => {
    const label = put(settings, "label", `lt-setting ${cls}`);
    const input = put(label, "input", "");
    input.type = "checkbox";
    put(label, "span", "", ` ${text}`);
    input.addEventListener("change", () => {
      m.set(trait, toTrait(input.checked));
      m.save_changes();
    });
    return [label, input] as const;
  };
  // shown as "instance masks" (the usual case checked), stored as its opposite, `semantic`
  const [semLabel, sem] = checkbox("lt-semantic", "Instance masks (off: one mask per class)", "semantic", (c) => !c);
  const [, skip] = checkbox("lt-skip-labeled", "Don't auto-predict when the image already has labels",
    "skip_predict_if_labeled", (c) => c);

  const team = put(root, "div", "lt-team");
  const error = put(root, "div", "lt-error");
  const notice = put(root, "div", "lt-notice");
  const foot = put(root, "div", "lt-panel-row lt-foot");
  const position = put(foot, "span", "lt-position");
  const stats = put(foot, "span", "lt-stats");
  const toast = toaster(put(root, "div", "lt-toast"), "lt-toast-shown");

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
    const note = m.get("notice") ?? "";
    notice.textContent = note;
    notice.hidden = !note;
    position.textContent = m.get("position");
    const loss = m.get("loss");
    const ms = m.get("predict_ms");
    const parts = [`step ${m.get("step")}`];
    if (loss !== null && Number.isFinite(loss)) parts.push(`loss ${loss.toFixed(3)}`);
    if (ms !== null && Number.isFinite(ms)) parts.push(`pre-labels in ${Math.round(ms)} ms`);
    stats.textContent = parts.join(" · ");
    const teamLine = m.get("team") ?? "";
    team.textContent = teamLine;
    team.hidden = !teamLine;
    const training = m.get("training");
    // a team's trainer is started and stopped where it is served, not by one annotator
    trainBtn.hidden = teamLine !== "";
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
    auto.checked = m.get("auto_threshold");
    autoLabel.hidden = task !== "detection";
    thrInfo.textContent = m.get("threshold_info");
    thrInfo.hidden = task === "classification" || !m.get("threshold_info");
    sem.checked = !m.get("semantic");
    semLabel.hidden = task !== "segmentation";
    skip.checked = m.get("skip_predict_if_labeled");
    // hooks for the browser tests
    root.dataset.phase = phase;
    root.dataset.quality = q === null ? "" : String(q);
    root.dataset.labeled = String(labeled);
    root.dataset.evaluated = String(m.get("evaluated"));
    root.dataset.team = teamLine;
  };
  const onMsg = (msg: unknown) => {
    const content = msg as { type?: string; message?: string };
    if (content?.type !== "error" || typeof content.message !== "string") return;
    toast.show(content.message);
  };
  m.on("change", update);
  m.on("msg:custom", onMsg);
  update();
  return () => {
    m.off("change", update);
    m.off("msg:custom", onMsg);
    toast.dispose();
  };
}

export default { render };
