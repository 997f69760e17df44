// Numbers for people: durations, sizes, shares, times.

export function ms(v: number | null | undefined): string {
  if (v === null || v === undefined) return '–';
  if (v >= 1000) return `${(v / 1000).toFixed(v >= 10_000 ? 0 : 2)} s`;
  return `${v.toFixed(v >= 100 ? 0 : 1)} ms`;
}

export function bytes(v: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

export function pct(v: number | null | undefined, digits = 1): string {
  return v === null || v === undefined ? '–' : `${(v * 100).toFixed(digits)}%`;
}

export function clock(iso: string | number): string {
  return new Date(iso).toLocaleTimeString([], { hour12: false });
}

/** Creates an element with text or children; never innerHTML, so report text cannot inject markup. */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...children: (Node | string | null | undefined)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}
