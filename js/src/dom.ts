// DOM and timing helpers shared by the canvas, the panel and the plots.

/** An element with a class and, optionally, text. Text always goes in as textContent, never as
 * markup: class names, image names and messages come from users and kernels. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/** `el`, appended to `parent`. */
export function put<K extends keyof HTMLElementTagNameMap>(
  parent: HTMLElement, tag: K, cls: string, text?: string,
): HTMLElementTagNameMap[K] {
  return parent.appendChild(el(tag, cls, text));
}

/** A timing mark for the browser tests and benchmarks (what happened when, in page time). */
export function mark(event: string, fields: Record<string, unknown> = {}): void {
  const g = globalThis as { __livetrainTimings?: object[] };
  (g.__livetrainTimings ??= []).push({ event, t: performance.now(), ...fields });
}

/** A message line that shows for five seconds each time `show` is called (class `shown` while visible);
 * `dispose` clears its timer when the view goes away. */
export function toaster(toast: HTMLElement, shown: string): { show(text: string): void; dispose(): void } {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return {
    show(text: string) {
      toast.textContent = text;
      toast.classList.add(shown);
      clearTimeout(timer);
      timer = setTimeout(() => toast.classList.remove(shown), 5000);
    },
    dispose: () => clearTimeout(timer),
  };
}
