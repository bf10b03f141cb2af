// The optimistic Finish & Next: the state machine of one view, without the DOM (unit-tested).
//
// The kernel sends the image a submission opens next ahead of time (`next_image`, `next_meta`,
// `next_objects`). On Finish & Next a view whose copy of it is decoded shows it at once and sends the
// submission of the image it came from; the kernel then either opens that image (its usual traits, same
// id: the view *adopts* them) or says `{"type": "stay", image_id}` (refused: the view *reverts* to the
// submitted image exactly as it was). Until one of the two, the advance is *pending*:
//
// - the model's traits still describe the submitted image: the view keeps showing the next one;
// - edits the person makes on the next image stay in the view (`dirty`) and are synced once adopted;
// - a second Finish & Next is held until then when the person changed something (one-key
//   classification), and dropped otherwise (a double Enter must not submit an image unlabeled);
//   Skip, Back and Predict are held and sent about the adopted image; the latest one wins;
// - the kernel opening some third image ends the advance as if it had been a plain new image.

import type { CanvasAction } from "../protocol";

export interface Pending {
  /** the submitted image (the model's `image_id` until the kernel answers) */
  readonly from: number;
  /** the image shown ahead */
  readonly to: number;
  /** the person changed the objects or the class of `to` since the swap */
  dirty: boolean;
  /** an action to send about `to` once the kernel confirms it */
  held: CanvasAction | null;
}

/** What the view does with the model's traits while an advance is pending. */
export type Verdict =
  /** no advance pending: the usual reconciliation */
  | "none"
  /** the kernel has not answered: keep showing the next image, ignore the submitted image's traits */
  | "wait"
  /** the kernel opened the image shown ahead: take its traits without decoding again */
  | "adopt"
  /** the kernel opened another image: forget the advance, show that one */
  | "replace";

/** What to do with an action while an advance is pending. */
export type ActionVerdict = "send" | "hold" | "drop";

export class Advance {
  pending: Pending | null = null;

  /** Whether Finish & Next may swap now: an image shown, a decoded next that is another image, no
   * advance pending, the canvas editable. */
  static possible(current: number, next: { id: number; decoded: boolean } | null, editable: boolean): boolean {
    return editable && current >= 0 && next !== null && next.decoded && next.id >= 0 && next.id !== current;
  }

  start(from: number, to: number): void {
    if (this.pending) throw new Error("an advance is already pending");
    this.pending = { from, to, dirty: false, held: null };
  }

  /** The model's `image_id` as the kernel last set it. */
  onModel(modelId: number): Verdict {
    const p = this.pending;
    if (!p) return "none";
    if (modelId === p.from) return "wait";
    return modelId === p.to ? "adopt" : "replace";
  }

  /** A `stay` message: whether the view goes back to the submitted image. */
  onStay(imageId: number): boolean {
    return this.pending !== null && this.pending.from === imageId;
  }

  /** An action while an advance is pending ("send" when none is). */
  onAction(action: CanvasAction): ActionVerdict {
    const p = this.pending;
    if (!p) return "send";
    if (action === "submit" && !p.dirty) return "drop";
    p.held = action;
    return "hold";
  }

  /** The person changed the objects or the class of the image shown ahead. */
  edited(): void {
    if (this.pending) this.pending.dirty = true;
  }

  /** End the advance (adopted, reverted or replaced); returns it as it was. */
  finish(): Pending | null {
    const p = this.pending;
    this.pending = null;
    return p;
  }
}
