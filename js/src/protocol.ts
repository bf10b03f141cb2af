// The contract between the Python widgets (livetrain_widgets/widgets/*.py) and this front end.
//
// Python is the source of truth for trait names and meanings; keep this file and the Python classes
// in step. State a page reload or a saved notebook must show lives in traits; one-off requests travel
// as custom messages and always carry the image id they are about, so a late or repeated message is
// recognised as stale instead of acting on the wrong image.

export type Task = "detection" | "segmentation" | "classification";

/** "prelabel": a pending pre-label (drawn dashed, with its score) the user has not yet accepted or
 * edited; "user": anything the user drew, edited or accepted, and labels loaded from the store. */
export type Source = "user" | "prelabel";

/** Bytes as they arrive from ipywidgets (DataView) or as the front end sends them. */
export type Bytes = DataView | ArrayBuffer | Uint8Array;

/** One instance mask, cropped to (x, y, w, h) in original image pixels.
 *
 * `rle` holds uint32 little-endian run lengths over the w×h crop in row-major order, alternating
 * background / foreground and starting with background (so the first run may be 0). The runs sum to
 * w×h. Python encodes and decodes the same format with numpy (widgets/_codec.py); the shared test
 * vectors are in js/test/fixtures/rle.json. */
export interface WireMask {
  x: number;
  y: number;
  w: number;
  h: number;
  rle: Bytes;
}

export interface WireObject {
  /** Unique within the image. The front end makes "u<n>" ids; Python sends "p<n>" for pre-labels
   * and "s<n>" for stored labels. */
  id: string;
  /** class index into `classes` */
  label: number;
  /** x0, y0, x1, y1 in original image pixels (for masks: the tight box of the mask) */
  box: [number, number, number, number];
  source: Source;
  /** pre-label confidence in [0, 1]; absent or null for user objects */
  score?: number | null;
  /** segmentation only */
  mask?: WireMask | null;
}

/** Traits of `LabelCanvas` (widgets/canvas.py). */
export interface CanvasModel {
  task: Task;
  classes: string[];
  /** CSS colours, one per class (cycled when there are more classes) */
  colors: string[];
  /** the image for display: encoded JPEG / PNG / WebP bytes, possibly downscaled from the original */
  image: DataView;
  /** original width, height: the coordinate system of every annotation */
  image_size: [number, number];
  /** -1 = no image */
  image_id: number;
  image_name: string;
  objects: WireObject[];
  /** classification: the chosen class, -1 = none */
  category: number;
  /** classification pre-label: one probability per class ([] = none) */
  category_scores: number[];
  /** pending pre-labels scoring below this are hidden, and are not submitted */
  threshold: number;
  /** one threshold per class instead of `threshold` ([] = none): the thresholds chosen from the history */
  class_thresholds: number[];
  /** class index given to new objects (digit keys and the class chips set it) */
  label: number;
  /** id of the selected object, "" = none */
  selected: string;
  /** "box" | "brush" | "eraser" | "polygon" | "fill" | "pan" | "click" (only while `click_tool`) */
  tool: string;
  /** brush / eraser diameter in original image pixels */
  brush_size: number;
  /** segmentation: one mask per class; the brush paints into the current class's mask */
  semantic: boolean;
  view_only: boolean;
  /** a message from Python (e.g. why a submission was refused); "" = none */
  message: string;
  /** height of the drawing area in CSS pixels */
  height: number;
  /** segmentation: the kernel answers click messages, so the click tool is offered (correction mode) */
  click_tool: boolean;
  /** the image a submission opens next, sent ahead (same encoding as `image`; empty = none). The view
   * decodes it in the background and shows it at once on Finish & Next; the kernel then confirms with
   * the usual traits of that image (same id), or answers a StayMessage (see canvas/advance.ts). */
  next_image: DataView;
  /** what goes with `next_image` ({} = none) */
  next_meta: NextMeta | Record<string, never>;
  /** the next image's pending pre-labels (wire form of `objects`) */
  next_objects: WireObject[];
  /** pairs the canvas with a LivePanel of the same group (PanelRequest); "" = none */
  group: string;
}

export interface NextMeta {
  image_id: number;
  image_name: string;
  image_size: [number, number];
  /** classification: the pre-label's probabilities ([] = none) */
  category_scores: number[];
  /** the model step of its pre-labels (null = none sent) */
  step: number | null;
}

/** Python's answer to a submission that did not move on (refused, nothing left, the next image failed to
 * open): a view that showed the next image ahead goes back to `image_id` as it was. */
export interface StayMessage {
  type: "stay";
  image_id: number;
}

/** A panel button asks the canvas of its group first: a window CustomEvent with this detail, dispatched
 * synchronously; a canvas view that handles the action sets `claimed` (it sends the message itself, about
 * the image it shows), otherwise the panel sends its own PanelActionMessage. */
export const PANEL_EVENT = "livetrain:panel-action";
export interface PanelRequest {
  group: string;
  action: PanelAction;
  claimed: boolean;
}

/** Custom messages the canvas sends. `image_id` is the image the user was looking at. */
export type CanvasAction = "submit" | "skip" | "back" | "predict";
export interface ActionMessage {
  type: "action";
  action: CanvasAction;
  image_id: number;
}

/** The click tool's request: a correction click in original image pixels (positive adds to the class
 * `label`, negative removes). The canvas does not edit: the kernel answers by replacing `objects`,
 * then replies `done` (or `error`) with the same `id`. */
export interface ClickMessage {
  type: "click";
  /** unique per view ("<view token>-<n>"), at most 64 characters */
  id: string;
  image_id: number;
  x: number;
  y: number;
  positive: boolean;
  label: number;
}

/** Python's answer to a request that carried an id (a click, a strip button). */
export interface DoneMessage {
  type: "done";
  id: string | number;
}

/** Python's reply when a message was refused (malformed, stale, or failed); `id` is the request's,
 * when it had a valid one. */
export interface ErrorMessage {
  type: "error";
  message: string;
  id?: string | number | null;
}

/** Traits of `LivePanel` (widgets/panel.py). */
export interface PanelModel {
  task: Task;
  /** the trainer's status in a labeler's words ("Label 2 more images to start", "Learning…", ...) */
  status: string;
  /** "idle" | "waiting" | "training" | "paused" | "stopped" | "reconnecting" (a team's trainer away) */
  phase: string;
  /** a transient activity shown beside the status: "" | "Predicting…" | "Saving…" */
  busy: string;
  /** the last error, in words; "" = none */
  error: string;
  /** good news and the next steps ("All 16 images are labeled. Next: …"), shown apart from errors; "" = none */
  notice: string;
  /** the live evaluator's moving average in [0, 1]; null until a pre-label was judged */
  quality: number | null;
  /** how many pre-labels were judged */
  evaluated: number;
  labeled: number;
  total: number;
  /** the current image's name and position, e.g. "BloodImage_00012.jpg (13 of 364)" */
  position: string;
  step: number;
  loss: number | null;
  /** whether the trainer is running (the start/stop button shows the other) */
  training: boolean;
  can_back: boolean;
  /** pending pre-labels visible on the canvas */
  prelabels: number;
  /** prediction settings */
  threshold: number;
  /** the threshold follows the history's choice (the slider turns it off) */
  auto_threshold: boolean;
  /** the chosen thresholds and the expected saving, in words ("" = none yet) */
  threshold_info: string;
  semantic: boolean;
  skip_predict_if_labeled: boolean;
  /** the last pre-label round trip in ms as seen by the kernel (null = none yet) */
  predict_ms: number | null;
  /** the canvas this panel's buttons go through first (PanelRequest); "" = none */
  group: string;
  /** a team's annotator: who else is labeling, in words ("Also labeling: bob (image 12)"); "" = not a
   * team (the train button is then the person's own; in a team the trainer is not theirs to stop) */
  team: string;
}

export type PanelAction =
  | "submit"
  | "skip"
  | "back"
  | "predict"
  | "discard"
  | "accept"
  | "start"
  | "stop";
export interface PanelActionMessage {
  type: "action";
  action: PanelAction;
}

/** Traits of a live plot (widgets/plots.py: LivePlot, LossPlot, SamplerPlot, QualityPlot).
 *
 * `data` maps series names to float64 little-endian bytes (DataView here); NaN = no value (a gap).
 * Series of one group have equal lengths. The groups of each kind (docstrings of loss_data,
 * sampler_data and quality_data say exactly how each is computed):
 *
 * - "loss": step, loss, smoothed (one row per step, bucket means when long).
 * - "sampler": order, seen, target, seen_recent (one row per labeled sample, in the order they joined
 *   training); batch_step, recent_share, recent_avg, uniform_share (one row per logged batch).
 * - "quality": order, score, ema, step (one row per judged pre-label), plus per task: correct,
 *   imprecise, wrong_class, missed, extra (detection, object counts); mean_iou, semantic_miou
 *   (segmentation); top1, topk, topk_avg (classification).
 *
 * An empty `data` (or an empty x series) shows `meta.empty` instead of a chart. */
export interface PlotModel {
  /** "loss" | "sampler" | "quality" */
  kind: string;
  title: string;
  /** named series, float64 LE bytes each (see above) */
  data: Record<string, DataView>;
  /** small JSON extras. All kinds: empty (text shown instead of the chart). "loss": step (last step
   * trained), paused, plateaus ([start, end, resumed][]: shaded from where the loss stopped improving
   * to the step training paused at). "sampler": recent, window, samples, batch_size, step, sampler,
   * empty_batches. "quality": task, judged, ema, score_name, not_offered, categories ([key, name][],
   * detection, bottom of the stack first), top_k and window (classification). */
  meta: Record<string, unknown>;
  /** height of the charts in CSS pixels (kinds with two charts split it); title and legends add to it */
  height: number;
}

/** Traits of `StreamStrip` (widgets/stream.py): the correction mode's filmstrip, counters and buttons. */
export interface StripModel {
  task: Task;
  names: string[];
  /** one small JPEG per frame (empty until made) */
  thumbs: DataView[];
  /** per frame: "" (to do) | "accepted" | "corrected" */
  marks: string[];
  /** the frame being corrected; the number of frames once the stream is done */
  current: number;
  /** a done frame shown for a look back, -1 = none */
  viewing: number;
  /** StreamSession.stats(): frames, done, corrections, full_corrections, clicks, accepted, updates,
   * last_update_seconds, mean_update_seconds, last_update_epochs, adapter_parameters, adapt, adapter_name */
  stats: StreamStats;
  /** clicks made in this stream, and on the current frame */
  clicks: number;
  frame_clicks: number;
  /** "" | "training" (an adapter update runs) | "predicting" | "saving" */
  busy: string;
  message: string;
  error: string;
  /** where Save adapter writes */
  adapter_dir: string;
}

export interface StreamStats {
  frames?: number;
  done?: number;
  corrections?: number;
  full_corrections?: number;
  clicks?: number;
  accepted?: number;
  updates?: number;
  /** updates the guard took back */
  reverted?: number;
  last_update_seconds?: number | null;
  mean_update_seconds?: number | null;
  last_update_epochs?: number | null;
  adapter_parameters?: number;
  adapt?: boolean;
  adapter_name?: string | null;
}

export type StripAction = "accept" | "reset" | "save" | "view";
/** A strip button. `frame`: the current frame as the view saw it (accept); `index`: the frame to show
 * (view). Answered by a DoneMessage or an ErrorMessage with the same id. */
export interface StripMessage {
  type: "action";
  action: StripAction;
  id: string;
  frame?: number;
  index?: number;
}
