// Snapshot undo/redo for one image. Snapshots are immutable object lists (see objects.ts), so a step
// costs one array of references, never a copy of the masks.

export class History<T> {
  private past: T[] = [];
  private future: T[] = [];

  constructor(readonly limit = 100) {}

  /** Record `before`, the state an edit is about to replace. A new edit drops the redo branch. */
  push(before: T): void {
    this.past.push(before);
    if (this.past.length > this.limit) this.past.splice(0, this.past.length - this.limit);
    this.future = [];
  }

  /** The state to go back to from `current`, or undefined when there is none. */
  undo(current: T): T | undefined {
    const prev = this.past.pop();
    if (prev === undefined) return undefined;
    this.future.push(current);
    return prev;
  }

  redo(current: T): T | undefined {
    const next = this.future.pop();
    if (next === undefined) return undefined;
    this.past.push(current);
    return next;
  }

  clear(): void {
    this.past = [];
    this.future = [];
  }

  get canUndo(): boolean {
    return this.past.length > 0;
  }

  get canRedo(): boolean {
    return this.future.length > 0;
  }
}
