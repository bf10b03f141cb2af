import { describe, it } from "node:test";
import { expect } from "expect";
import { History } from "../src/canvas/history";

describe("undo history", () => {
  it("undoes and redoes snapshots in order", () => {
    const h = new History<string>();
    let cur = "a";
    for (const next of ["b", "c", "d"]) {
      h.push(cur);
      cur = next;
    }
    cur = h.undo(cur)!;
    expect(cur).toBe("c");
    cur = h.undo(cur)!;
    expect(cur).toBe("b");
    cur = h.redo(cur)!;
    expect(cur).toBe("c");
    cur = h.redo(cur)!;
    expect(cur).toBe("d");
    expect(h.redo(cur)).toBeUndefined();
    expect(h.canRedo).toBe(false);
  });

  it("a new edit after undo drops the redo branch", () => {
    const h = new History<number>();
    h.push(1);
    const back = h.undo(2)!;
    expect(back).toBe(1);
    expect(h.canRedo).toBe(true);
    h.push(back);
    expect(h.canRedo).toBe(false);
    expect(h.undo(3)).toBe(1);
  });

  it("keeps at most `limit` steps, dropping the oldest", () => {
    const h = new History<number>(100);
    for (let i = 0; i < 150; i++) h.push(i);
    let cur = 150;
    let n = 0;
    for (let s = h.undo(cur); s !== undefined; s = h.undo(cur)) {
      cur = s;
      n++;
    }
    expect(n).toBe(100);
    expect(cur).toBe(50);
  });

  it("clear empties both directions", () => {
    const h = new History<number>();
    h.push(1);
    h.undo(2);
    h.clear();
    expect(h.canUndo || h.canRedo).toBe(false);
  });
});
