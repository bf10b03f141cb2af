// StreamStrip front end (anywidget): the correction mode's filmstrip, counters, adapter state and
// buttons. Everything shown comes from traits (a reloaded page shows the same); buttons send requests
// with an id, which the kernel answers with "done" or "error". Python side: widgets/stream.py.

import type { AnyModel, RenderProps } from "@anywidget/types";
import type { StreamStats, StripAction, StripMessage, StripModel } from "../protocol";
import { el, mark, put, toaster } from "../dom";
import { adapterText, busyText, counters, thumbState } from "./format";
import "./stream.css";

type Model = AnyModel<StripModel>;

function asBytes(v: unknown): Uint8Array | null {
  if (v instanceof DataView) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (v instanceof Uint8Array) return v;
  return null;
}

function render({ model, el: host }: RenderProps<StripModel>): () => void {
  const m = model as Model;
  const root = put(host, "div", "lts-root");
  const token = Math.random().toString(36).slice(2, 10);
  let seq = 0;
  const pending = new Map<string, StripAction>();

  const top = put(root, "div", "lts-row lts-top");
  const counterEls = new Map<string, HTMLElement>();
  const countersBox = put(top, "div", "lts-counters");
  const adapter = put(top, "div", "lts-adapter");
  const dot = put(adapter, "span", "lts-dot");
  const adapterLabel = put(adapter, "span", "lts-adapter-text");

  const buttons = put(root, "div", "lts-row lts-buttons");
  const send = (action: StripAction, extra: Partial<StripMessage> = {}) => {
    const id = `${token}-${++seq}`;
    pending.set(id, action);
    mark("strip_action", { action, id });
    const msg: StripMessage = { type: "action", action, id, ...extra };
    m.send(msg);
    update();
  };
  /** A mouse click must not move the keyboard focus here: Enter, meant for the canvas, would press the
   * button again (a second Reset). Keyboard users still reach the buttons with Tab. */
  const keepFocus = (b: HTMLElement) => b.addEventListener("mousedown", (e) => e.preventDefault());
  const button = (action: StripAction, label: string, title: string, cls = "") => {
    const b = put(buttons, "button", `lts-btn ${cls}`.trim(), label);
    b.type = "button";
    b.title = title;
    b.dataset.action = action;
    keepFocus(b);
    return b;
  };
  const accept = button("accept", "Accept (Enter)",
    "Take what the canvas shows as this frame's answer: a correction (clicks, painting, another class) trains the "
    + "adapter first; then the next frame", "lts-primary");
  accept.addEventListener("click", () => send("accept", { frame: m.get("current") }));
  const reset = button("reset", "Reset adapter", "Forget what the adapter learned: back to the base model");
  // two presses: what the adapter learned in this stream is gone after a reset
  let armed: ReturnType<typeof setTimeout> | undefined;
  const disarm = () => {
    clearTimeout(armed);
    armed = undefined;
    reset.textContent = "Reset adapter";
    reset.classList.remove("lts-armed");
  };
  reset.addEventListener("click", () => {
    if (armed === undefined) {
      reset.textContent = "Click again to reset";
      reset.classList.add("lts-armed");
      armed = setTimeout(disarm, 4000);
      return;
    }
    disarm();
    send("reset");
  });
  const save = button("save", "Save adapter", "");
  save.addEventListener("click", () => send("save"));
  const busyEl = put(buttons, "span", "lts-busy");

  const film = put(root, "div", "lts-film");
  film.setAttribute("role", "list");
  const message = put(root, "div", "lts-message");
  const error = put(root, "div", "lts-error");
  const toastLine = put(root, "div", "lts-toast");
  toastLine.setAttribute("role", "status");
  const toast = toaster(toastLine, "lts-toast-shown");

  // ----------------------------------------------------------------------------- filmstrip
  let thumbEls: HTMLButtonElement[] = [];
  let urls: string[] = [];
  let builtFor: [unknown, unknown] = [null, null];
  let scrolledTo = -1;
  const buildFilm = () => {
    const names = m.get("names") ?? [];
    const thumbs = m.get("thumbs") ?? [];
    if (builtFor[0] === names && builtFor[1] === thumbs) return;
    builtFor = [names, thumbs];
    urls.forEach((u) => URL.revokeObjectURL(u));
    urls = [];
    film.replaceChildren();
    thumbEls = names.map((name, i) => {
      const b = el("button", "lts-thumb");
      b.type = "button";
      b.dataset.index = String(i);
      b.setAttribute("role", "listitem");
      b.title = name;
      const bytes = asBytes(thumbs[i]);
      if (bytes && bytes.byteLength) {
        const img = el("img", "lts-img");
        const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>], { type: "image/jpeg" }));
        urls.push(url);
        img.src = url;
        img.alt = name;
        img.draggable = false;
        b.append(img);
      } else {
        b.append(el("span", "lts-img lts-img-empty"));
      }
      b.append(el("span", "lts-num", String(i + 1)), el("span", "lts-badge"));
      keepFocus(b);
      b.addEventListener("click", () => {
        if (b.classList.contains("lts-clickable")) send("view", { index: i });
      });
      film.append(b);
      return b;
    });
    scrolledTo = -1;
  };

  const update = () => {
    buildFilm();
    const stats = (m.get("stats") ?? {}) as StreamStats;
    const current = m.get("current");
    const viewing = m.get("viewing");
    const busy = m.get("busy");
    const marks = m.get("marks") ?? [];
    const frames = stats.frames ?? thumbEls.length;
    const done = current >= frames;

    countersBox.replaceChildren();
    for (const c of counters(stats, current, m.get("clicks"), m.get("frame_clicks"))) {
      const box = put(countersBox, "span", "lts-counter");
      box.title = c.title;
      box.dataset.key = c.key;
      put(box, "span", "lts-counter-label", `${c.label} `);
      counterEls.set(c.key, put(box, "strong", "lts-counter-value", c.value));
    }
    adapterLabel.textContent = adapterText(stats, busy);
    dot.dataset.busy = busy;
    busyEl.textContent = busyText(busy);

    const accepting = [...pending.values()].includes("accept");
    accept.disabled = done || viewing >= 0 || busy !== "" || accepting;
    reset.disabled = busy !== "" || stats.adapt === false;
    save.disabled = busy !== "" || stats.adapt === false;
    save.title = `Write the adapter to ${m.get("adapter_dir")} (safetensors), to start a similar stream from it`;

    thumbEls.forEach((b, i) => {
      const s = thumbState(marks, i, current, viewing);
      b.classList.toggle("lts-accepted", s.state === "accepted");
      b.classList.toggle("lts-corrected", s.state === "corrected");
      b.classList.toggle("lts-current", s.current);
      b.classList.toggle("lts-viewing", s.viewing);
      b.classList.toggle("lts-clickable", s.clickable);
      b.disabled = !s.clickable;
      const badge = b.querySelector(".lts-badge");
      if (badge && badge.textContent !== s.badge) badge.textContent = s.badge;
    });
    const focus = viewing >= 0 ? viewing : Math.min(current, thumbEls.length - 1);
    if (focus >= 0 && focus !== scrolledTo && thumbEls[focus]) {
      scrolledTo = focus;
      const t = thumbEls[focus];
      // keep the frame in view inside the strip only (scrollIntoView would scroll the notebook too)
      const left = t.offsetLeft - film.clientWidth / 2 + t.offsetWidth / 2;
      film.scrollTo({ left: Math.max(0, left) });
    }

    message.textContent = m.get("message");
    message.hidden = !m.get("message");
    error.textContent = m.get("error");
    error.hidden = !m.get("error");

    // hooks for the browser tests
    const d = root.dataset;
    d.current = String(current);
    d.viewing = String(viewing);
    d.busy = busy;
    d.updates = String(stats.updates ?? 0);
    d.corrections = String(stats.corrections ?? 0);
    d.accepted = String(stats.accepted ?? 0);
    d.clicks = String(m.get("clicks"));
    d.pending = String(pending.size);
  };

  const onMsg = (msg: unknown) => {
    const c = msg as { type?: string; id?: unknown; message?: unknown };
    if (!c || (c.type !== "done" && c.type !== "error")) return;
    const mine = typeof c.id === "string" && pending.has(c.id);
    if (c.id !== undefined && c.id !== null && !mine) return; // another view's request
    if (mine) pending.delete(c.id as string);
    if (c.type === "error") {
      toast.show(String(c.message ?? "error"));
    }
    update();
  };

  m.on("change", update);
  m.on("msg:custom", onMsg);
  update();
  return () => {
    m.off("change", update);
    m.off("msg:custom", onMsg);
    toast.dispose();
    clearTimeout(armed);
    urls.forEach((u) => URL.revokeObjectURL(u));
  };
}

export default { render };
