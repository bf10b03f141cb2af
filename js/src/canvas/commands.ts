// What each key command does. The key map (keys.ts) says which key means what; this says what it
// does to the canvas, so the toolbar buttons and the keys share one implementation.

import { adjustBox, moveBox, panBy } from "./geometry";
import type { CanvasHost } from "./host";
import type { Command } from "./keys";
import { acceptAll, acceptOne, deleteObj, discardAll, edited, pendingCount, replaceObj } from "./objects";

export function runCommand(h: CanvasHost, cmd: Command): void {
  const [W, H] = h.imageSize;
  const sel = h.selected;
  const edit = h.editable && !h.tools.busy;
  switch (cmd.kind) {
    case "label":
      if (h.task === "classification") h.classify(cmd.index, true);
      else h.chooseClass(cmd.index);
      break;
    case "assign":
      if (edit) h.assign();
      break;
    case "cycle": {
      const vis = h.visible();
      if (!vis.length) break;
      const i = vis.findIndex((o) => o.id === sel);
      const n = i < 0 ? (cmd.dir > 0 ? 0 : vis.length - 1) : (i + cmd.dir + vis.length) % vis.length;
      h.select(vis[n].id);
      break;
    }
    case "move":
      if (edit && sel) h.commit(replaceObj(h.objects, sel, (o) => (o.mask ? o : edited(o, { box: moveBox(o.box, cmd.dx, cmd.dy, W, H) }))));
      break;
    case "grow":
      if (edit && sel) h.commit(replaceObj(h.objects, sel, (o) => (o.mask ? o : edited(o, { box: adjustBox(o.box, cmd.dw, cmd.dh, W, H) }))));
      break;
    case "delete":
      if (edit && sel) h.commit(deleteObj(h.objects, sel), "");
      break;
    case "pan":
      h.setView(panBy(h.view, cmd.dx, cmd.dy));
      break;
    case "action":
      h.action(cmd.action);
      break;
    case "enter": {
      const c = h.category >= 0 ? h.category : h.topSuggestion();
      if (c < 0) h.ui.toast("Choose a class first (1–9, 0, or click one)");
      else h.classify(c, true);
      break;
    }
    case "acceptAll":
      if (h.task === "classification") {
        const c = h.topSuggestion();
        if (c >= 0) h.classify(c, false);
      } else if (edit && pendingCount(h.objects, h.threshold) > 0) {
        h.commit(acceptAll(h.objects, h.threshold));
      }
      break;
    case "discardAll":
      if (edit && h.objects.some((o) => o.source === "prelabel")) h.commit(discardAll(h.objects));
      break;
    case "acceptSelected": {
      const o = h.objects.find((x) => x.id === sel);
      if (edit && o?.source === "prelabel") h.commit(acceptOne(h.objects, sel));
      break;
    }
    case "undo":
      h.undo();
      break;
    case "redo":
      h.redo();
      break;
    case "zoom":
      h.zoom(cmd.factor);
      break;
    case "fit":
      h.fit();
      break;
    case "tool":
      h.setTool(cmd.tool);
      break;
    case "togglePan":
      h.setTool(h.tool === "pan" ? h.prevTool : "pan");
      break;
    case "brushSize": {
      const step = Math.max(1, Math.round(h.brushSize * 0.2));
      h.setBrushSize(h.brushSize + cmd.dir * step);
      break;
    }
    case "newInstance":
      h.select("");
      if (h.semantic) h.ui.toast("Semantic mode: each class has one mask");
      else h.ui.toast("The next stroke starts a new instance");
      break;
    case "escape":
      if (h.ui.helpShown) h.ui.showHelp(false);
      else if (sel) h.select("");
      else h.ui.root.blur();
      break;
    case "polygonClose":
      h.tools.closePolygon();
      break;
    case "polygonUndo":
      h.tools.undoVertex();
      break;
    case "polygonCancel":
      h.tools.cancelPolygon();
      break;
    case "help":
      h.ui.showHelp();
      break;
  }
  h.updateUi();
}
