import { describe, it } from "node:test";
import { expect } from "expect";
import { Advance } from "../src/canvas/advance";

describe("optimistic Finish & Next", () => {
  it("swaps only to a decoded next image that is another image, on an editable canvas", () => {
    expect(Advance.possible(3, { id: 4, decoded: true }, true)).toBe(true);
    expect(Advance.possible(3, { id: 4, decoded: false }, true)).toBe(false);
    expect(Advance.possible(3, { id: 3, decoded: true }, true)).toBe(false); // the next is the current image
    expect(Advance.possible(3, null, true)).toBe(false); // the last image: nothing next
    expect(Advance.possible(-1, { id: 4, decoded: true }, true)).toBe(false);
    expect(Advance.possible(3, { id: 4, decoded: true }, false)).toBe(false); // view-only
  });

  it("waits while the model shows the submitted image, then adopts the kernel's confirmation", () => {
    const a = new Advance();
    expect(a.onModel(3)).toBe("none");
    a.start(3, 4);
    expect(a.onModel(3)).toBe("wait");
    expect(a.onModel(4)).toBe("adopt");
    expect(a.finish()).toEqual({ from: 3, to: 4, dirty: false, held: null });
    expect(a.pending).toBeNull();
    expect(a.onModel(4)).toBe("none");
  });

  it("reverts on a stay about the submitted image only", () => {
    const a = new Advance();
    expect(a.onStay(3)).toBe(false); // nothing pending: another view's advance
    a.start(3, 4);
    expect(a.onStay(4)).toBe(false);
    expect(a.onStay(3)).toBe(true);
  });

  it("forgets the advance when the kernel opens a third image", () => {
    const a = new Advance();
    a.start(3, 4);
    expect(a.onModel(9)).toBe("replace");
  });

  it("drops a second Enter on an untouched image, holds it once the person labeled something", () => {
    const a = new Advance();
    expect(a.onAction("submit")).toBe("send");
    a.start(3, 4);
    expect(a.onAction("submit")).toBe("drop"); // a double Enter must not submit image 4 unlabeled
    expect(a.pending!.held).toBeNull();
    a.edited(); // e.g. one-key classification: a class chosen on image 4
    expect(a.onAction("submit")).toBe("hold");
    expect(a.finish()).toEqual({ from: 3, to: 4, dirty: true, held: "submit" });
  });

  it("holds Skip, Back and Predict for the confirmed image; the latest wins", () => {
    const a = new Advance();
    a.start(3, 4);
    expect(a.onAction("skip")).toBe("hold");
    expect(a.onAction("back")).toBe("hold");
    expect(a.finish()?.held).toBe("back");
    a.edited(); // nothing pending: no effect
    expect(a.pending).toBeNull();
  });

  it("refuses to start twice", () => {
    const a = new Advance();
    a.start(3, 4);
    expect(() => a.start(4, 5)).toThrow();
  });
});
