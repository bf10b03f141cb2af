// What the stream strip says, as pure functions of its traits (node tests pin them down).

import type { StreamStats } from "../protocol";

const plural = (n: number, one: string, many = `${one}s`) => `${n.toLocaleString("en-US")} ${n === 1 ? one : many}`;

/** "adapter: 3 updates · last 0.42 s (14 epochs) · 2,824 params", "training…" while an update runs. */
export function adapterText(stats: StreamStats, busy: string): string {
  if (stats.adapt === false) return "adapter off (baseline: nothing is learned)";
  if (busy === "training") return "adapter: training…";
  const parts = [`adapter: ${plural(stats.updates ?? 0, "update")}`];
  // updates the guard took back (they made the last confirmed frames worse) still count as updates
  if (typeof stats.reverted === "number" && stats.reverted > 0) parts[0] += ` (${stats.reverted} taken back)`;
  const last = stats.last_update_seconds;
  if (typeof last === "number" && Number.isFinite(last)) {
    const epochs = stats.last_update_epochs;
    parts.push(`last ${last.toFixed(2)} s${typeof epochs === "number" ? ` (${plural(epochs, "epoch")})` : ""}`);
  }
  if (typeof stats.adapter_parameters === "number") parts.push(`${stats.adapter_parameters.toLocaleString("en-US")} params`);
  if (stats.adapter_name) parts.push(`from ${stats.adapter_name}`);
  return parts.join(" · ");
}

export interface Counter {
  key: string;
  label: string;
  value: string;
  title: string;
}

/** The counters: frame position, corrections, frames accepted without one, clicks. */
export function counters(stats: StreamStats, current: number, clicks: number, frameClicks: number): Counter[] {
  const frames = stats.frames ?? 0;
  const frame = current >= frames ? `done (${frames})` : `${current + 1} / ${frames}`;
  const full = stats.full_corrections ?? 0;
  return [
    { key: "frame", label: "Frame", value: frame, title: "the frame being corrected" },
    {
      key: "corrections", label: "Corrected", value: String(stats.corrections ?? 0),
      title: `frames fixed by clicks or painting (${full} painted); each one trained the adapter`,
    },
    { key: "accepted", label: "Accepted", value: String(stats.accepted ?? 0), title: "frames taken as predicted" },
    {
      key: "clicks", label: "Clicks", value: frameClicks ? `${clicks} (${frameClicks} here)` : String(clicks),
      title: "correction clicks in this stream (on this frame)",
    },
  ];
}

export type ThumbState = "todo" | "accepted" | "corrected";

/** A thumbnail's state and whether clicking it does anything (done frames and the current one, to go
 * back to it; frames ahead are corrected in order). */
export function thumbState(marks: readonly string[], i: number, current: number, viewing: number):
  { state: ThumbState; current: boolean; viewing: boolean; clickable: boolean; badge: string } {
  const m = marks[i];
  const state: ThumbState = m === "accepted" || m === "corrected" ? m : "todo";
  const isCurrent = i === current;
  return {
    state,
    current: isCurrent,
    viewing: i === viewing,
    clickable: state !== "todo" || (isCurrent && viewing >= 0),
    badge: state === "accepted" ? "✓" : state === "corrected" ? "✎" : "",
  };
}

/** What the busy line says ("" when idle). */
export function busyText(busy: string): string {
  switch (busy) {
    case "training":
      return "Training the adapter on your correction…";
    case "predicting":
      return "Predicting…";
    case "saving":
      return "Saving the adapter…";
    default:
      return busy;
  }
}
