// The canvas' own object model and its conversion to and from the wire (protocol.ts WireObject).
//
// Obj values are immutable: every edit makes a new Obj (and a new Mask when pixels change), so the
// undo history can hold plain arrays of them, and the wire form can be memoised per Obj / per Mask
// (a mask is re-encoded only when its pixels changed).

import type { Source, WireMask, WireObject } from "../protocol";
import { type Box, clampBox, moveBox, normBox, resizeBox, type Handle } from "./geometry";
import { asUint8, type Bytes, decodeRle, encodeRle, type Mask, trimMask } from "./mask";

export interface Obj {
  readonly id: string;
  readonly label: number;
  readonly box: Box;
  readonly source: Source;
  readonly score: number | null;
  readonly mask: Mask | null;
}

/** One confidence threshold for every class, or one per class (index = class; a class beyond the list
 * shows everything). */
export type Threshold = number | readonly number[];

/** What the person sees: user objects, and pending pre-labels at or above the threshold of their class
 * (the same rule as Python's `_codec.visible`). Hidden pre-labels are neither drawn, hit nor counted. */
export function isVisible(o: Obj, threshold: Threshold): boolean {
  if (o.source !== "prelabel" || o.score === null) return true;
  const t = typeof threshold === "number" ? threshold : (threshold[o.label] ?? 0);
  return o.score >= t;
}

export function visibleObjects(objs: readonly Obj[], threshold: Threshold): Obj[] {
  return objs.filter((o) => isVisible(o, threshold));
}

export function pendingCount(objs: readonly Obj[], threshold: Threshold): number {
  return objs.filter((o) => o.source === "prelabel" && isVisible(o, threshold)).length;
}

// -------------------------------------------------------------------------------------- the wire
const wireOfObj = new WeakMap<Obj, WireObject>();
const wireOfMask = new WeakMap<Mask, WireMask>();

/** An exact-size copy when `b` is a view into a larger buffer (ipywidgets would send all of it). */
function ownBytes(b: Bytes): Uint8Array {
  const u = asUint8(b);
  return u.byteOffset === 0 && u.byteLength === u.buffer.byteLength ? u : u.slice();
}

/** Objects as Python sent them. Malformed entries are skipped (the kernel validates what it gets
 * back; the canvas must not crash on a bad one) and reported through `onError`. */
export function fromWire(list: unknown, onError?: (msg: string) => void): Obj[] {
  if (!Array.isArray(list)) return [];
  const out: Obj[] = [];
  for (const raw of list as WireObject[]) {
    try {
      const box = raw.box.map(Number) as Box;
      if (box.length !== 4 || box.some((v) => !Number.isFinite(v))) throw new Error("bad box");
      let mask: Mask | null = null;
      if (raw.mask) {
        const { x, y, w, h } = raw.mask;
        const rle = ownBytes(raw.mask.rle);
        mask = { x, y, w, h, data: decodeRle(rle, w, h) };
        wireOfMask.set(mask, { x, y, w, h, rle });
      }
      const obj: Obj = {
        id: String(raw.id),
        label: Number(raw.label) | 0,
        box: normBox(box),
        source: raw.source === "prelabel" ? "prelabel" : "user",
        score: typeof raw.score === "number" ? raw.score : null,
        mask,
      };
      // what came is its own wire form: re-sending it needs no encoding, and the echo check
      // recognises it by identity even when Python sent more decimals than toWire keeps
      wireOfObj.set(obj, raw);
      out.push(obj);
    } catch (e) {
      onError?.(`skipped an object the canvas could not read (${(e as Error).message})`);
    }
  }
  return out;
}

/** The mask's wire form, trimmed to its content; null for an empty mask. Memoised per Mask. */
export function maskToWire(m: Mask): WireMask | null {
  const cached = wireOfMask.get(m);
  if (cached) return cached;
  const t = trimMask(m);
  if (!t) return null;
  const wire = { x: t.x, y: t.y, w: t.w, h: t.h, rle: encodeRle(t.data) };
  wireOfMask.set(m, wire);
  return wire;
}

export function toWire(o: Obj): WireObject {
  const cached = wireOfObj.get(o);
  if (cached) return cached;
  // boxes to 1/100 px, as Python sends them: readable JSON, and more precision than anyone draws
  const box = o.box.map((v) => Math.round(v * 100) / 100) as Box;
  const w: WireObject = { id: o.id, label: o.label, box, source: o.source };
  if (o.score !== null) w.score = o.score;
  if (o.mask) w.mask = maskToWire(o.mask);
  wireOfObj.set(o, w);
  return w;
}

function bytesEqual(a: Bytes, b: Bytes): boolean {
  const x = asUint8(a);
  const y = asUint8(b);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Whether `list` (from the model) says the same as `objs`: recognises the kernel's echo of our own
 * update (it comes back as new arrays with DataViews, so identity does not tell). */
export function sameAsWire(objs: readonly Obj[], list: unknown): boolean {
  if (!Array.isArray(list) || list.length !== objs.length) return false;
  for (let i = 0; i < objs.length; i++) {
    const a = toWire(objs[i]);
    const b = list[i] as WireObject;
    if (a === b) continue;
    if (!b || a.id !== b.id || a.label !== b.label || a.source !== b.source) return false;
    if ((a.score ?? null) !== (b.score ?? null)) return false;
    if (!Array.isArray(b.box) || a.box.some((v, k) => v !== b.box[k])) return false;
    const am = a.mask ?? null;
    const bm = b.mask ?? null;
    if (!am || !bm) {
      if (am !== bm) return false;
      continue;
    }
    if (am.x !== bm.x || am.y !== bm.y || am.w !== bm.w || am.h !== bm.h || !bytesEqual(am.rle, bm.rle)) return false;
  }
  return true;
}

// --------------------------------------------------------------------------------------- editing
/** A fresh "u<n>" id, unique within `objs`. */
export function newId(objs: readonly Obj[]): string {
  let n = 0;
  for (const o of objs) {
    const m = /^u(\d+)$/.exec(o.id);
    if (m) n = Math.max(n, Number(m[1]) + 1);
  }
  return `u${n}`;
}

/** The object as edited by the user: any edit turns a pre-label into the user's own. */
export function edited(o: Obj, change: Partial<Pick<Obj, "label" | "box" | "mask">>): Obj {
  return { ...o, ...change, source: "user", score: null };
}

export function replaceObj(objs: readonly Obj[], id: string, f: (o: Obj) => Obj | null): Obj[] {
  const out: Obj[] = [];
  for (const o of objs) {
    if (o.id !== id) out.push(o);
    else {
      const n = f(o);
      if (n) out.push(n);
    }
  }
  return out;
}

export function deleteObj(objs: readonly Obj[], id: string): Obj[] {
  return objs.filter((o) => o.id !== id);
}

export function setLabel(objs: readonly Obj[], id: string, label: number): Obj[] {
  return replaceObj(objs, id, (o) => (o.label === label && o.source === "user" ? o : edited(o, { label })));
}

export function moveObj(objs: readonly Obj[], id: string, dx: number, dy: number, W: number, H: number): Obj[] {
  return replaceObj(objs, id, (o) => (o.mask ? o : edited(o, { box: moveBox(o.box, dx, dy, W, H) })));
}

export function resizeObj(objs: readonly Obj[], id: string, start: Box, hd: Handle, dx: number, dy: number, W: number, H: number): Obj[] {
  return replaceObj(objs, id, (o) => (o.mask ? o : edited(o, { box: resizeBox(start, hd, dx, dy, W, H) })));
}

export function addBox(objs: readonly Obj[], box: Box, label: number, W: number, H: number): [Obj[], Obj] {
  const o: Obj = { id: newId(objs), label, box: clampBox(box, W, H), source: "user", score: null, mask: null };
  return [[...objs, o], o];
}

/** "Accept all": visible pre-labels become the user's; hidden ones are dropped, as Python's
 * `LabelCanvas.accept_prelabels` does (they would not be submitted anyway). */
export function acceptAll(objs: readonly Obj[], threshold: Threshold): Obj[] {
  return objs
    .filter((o) => isVisible(o, threshold))
    .map((o) => (o.source === "prelabel" ? { ...o, source: "user" as const, score: null } : o));
}

export function acceptOne(objs: readonly Obj[], id: string): Obj[] {
  return replaceObj(objs, id, (o) => (o.source === "prelabel" ? { ...o, source: "user", score: null } : o));
}

export function discardAll(objs: readonly Obj[]): Obj[] {
  return objs.filter((o) => o.source !== "prelabel");
}
