// LabelCanvas front end (anywidget). One drawing surface for detection, segmentation and image
// classification; the trait contract is ../protocol.ts, the Python side widgets/canvas.py.
//
// Everything a view needs comes from traits, so any number of views of one model work, each with its
// own zoom, gesture and undo history (all state lives in this closure), and a view created late or
// after a page reload draws the same thing.

import type { RenderProps } from "@anywidget/types";
import type { CanvasAction, CanvasModel, Task } from "../protocol";
import { CanvasHost } from "./host";
import "./canvas.css";

function render({ model, el }: RenderProps<CanvasModel>): () => void {
  const task = (model.get("task") as Task) || "detection";
  const host = new CanvasHost(model, el, task);
  return () => host.destroy();
}

export default { render };
export type { CanvasAction };
