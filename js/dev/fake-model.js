// A stand-in for the anywidget model, for the dev harness: get/set/on/off/save_changes/send with
// Backbone's semantics (set fires change:<name> synchronously when the value changed), plus what the
// kernel side does: `pySet` applies an update from "Python", and every save is echoed back as new
// objects with DataView buffers a moment later, as ipywidgets 8 does. Like ipywidgets 8, an echo is
// applied only to the traits this save was the latest to change: an older echo arriving after a
// newer save must not undo that save ("drunken sliders").

function copyForWire(value) {
  // what a round trip through the kernel gives back: fresh arrays/objects, binary as DataView
  if (value instanceof DataView) return new DataView(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
  if (ArrayBuffer.isView(value)) return new DataView(value.buffer.slice(value.byteOffset, value.byteOffset + value.byteLength));
  if (value instanceof ArrayBuffer) return new DataView(value.slice(0));
  if (Array.isArray(value)) return value.map(copyForWire);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, copyForWire(v)]));
  return value;
}

export class FakeModel {
  constructor(state, { echo = true } = {}) {
    this.state = { ...state };
    this.handlers = new Map();
    this.saves = []; // what the front end saved, in order
    this.sent = []; // custom messages the front end sent
    this.pending = {};
    this.echo = echo;
    this.lastSave = new Map(); // trait -> number of the latest save that changed it
    this.widget_manager = { get_model: async () => { throw new Error("no manager in the harness"); } };
  }
  get(k) {
    return this.state[k];
  }
  set(k, v) {
    if (this.state[k] === v) return;
    this.state[k] = v;
    this.pending[k] = v;
    this.emit(`change:${k}`);
  }
  on(ev, cb) {
    if (!this.handlers.has(ev)) this.handlers.set(ev, new Set());
    this.handlers.get(ev).add(cb);
  }
  off(ev, cb) {
    if (!ev) this.handlers.clear();
    else if (!cb) this.handlers.delete(ev);
    else this.handlers.get(ev)?.delete(cb);
  }
  emit(ev, ...args) {
    for (const cb of [...(this.handlers.get(ev) ?? [])]) cb(...args);
  }
  save_changes() {
    const saved = this.pending;
    this.pending = {};
    this.saves.push(saved);
    const n = this.saves.length;
    for (const k of Object.keys(saved)) this.lastSave.set(k, n);
    if (this.echo) setTimeout(() => this.echoSave(n, saved), 15);
  }
  echoSave(n, saved) {
    const latest = Object.keys(saved).filter((k) => this.lastSave.get(k) === n);
    for (const k of latest) this.lastSave.delete(k);
    if (latest.length) this.pySet(copyForWire(Object.fromEntries(latest.map((k) => [k, saved[k]]))));
  }
  send(content) {
    this.sent.push(content);
  }
  /** An update from the kernel: all traits first, then the change events (one set_state). */
  pySet(partial) {
    const changed = [];
    for (const [k, v] of Object.entries(partial)) {
      if (this.state[k] !== v) {
        this.state[k] = v;
        changed.push(k);
      }
    }
    for (const k of changed) this.emit(`change:${k}`);
    if (changed.length) this.emit("change");
  }
  /** A custom message from the kernel. */
  pyMsg(content) {
    this.emit("msg:custom", content, []);
  }
}
