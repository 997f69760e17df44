// Time-series charts (uPlot): one class that rebuilds its plot when the set of series changes (a new 5xx
// class, a new backend) and otherwise only swaps the data, once a second.
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export type Line = { label: string; values: (number | null)[]; color: string; dash?: number[]; width?: number };

export type ChartOptions = {
  /** Axis values formatter. */
  unit?: (v: number) => string;
  log?: boolean;
  min?: number;
  max?: number;
  height?: number;
};

const X_INCRS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900];

/** On a log axis, only powers of ten get a label and a grid line (the rest is noise at this size). */
const decades = (_u: uPlot, splits: number[]) => splits.map((v) => (Math.abs(Math.log10(v) - Math.round(Math.log10(v))) < 1e-9 ? v : null));

const PALETTE = ['#4e9af1', '#f1a94e', '#5cc98a', '#e86a6a', '#b48ef0', '#4ed3d8', '#e8d36a', '#f08ec8', '#9aa5b1', '#7fd16b'];

/** Stable colour per name (so a class keeps its colour across rebuilds). */
export function colorOf(name: string): string {
  let h = 0;
  for (let i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) >>> 0;
  return PALETTE[h % PALETTE.length]!;
}

export class Chart {
  readonly #el: HTMLElement;
  readonly #o: ChartOptions;
  #plot: uPlot | undefined;
  #labels = '';

  constructor(el: HTMLElement, o: ChartOptions = {}) {
    this.#el = el;
    this.#o = o;
    new ResizeObserver(() => this.#plot?.setSize({ width: this.#width(), height: this.#o.height ?? 170 })).observe(el);
  }

  #width(): number {
    return Math.max(200, this.#el.clientWidth);
  }

  update(x: number[], lines: Line[]): void {
    const labels = lines.map((l) => l.label).join('\u0000');
    const data = [x, ...lines.map((l) => l.values)] as uPlot.AlignedData;
    this.#el.dataset.points = String(x.length);
    this.#el.dataset.last = lines.map((l) => `${l.label}=${l.values[l.values.length - 1] ?? ''}`).join(';');
    if (this.#plot && labels === this.#labels) {
      this.#plot.setData(data);
      return;
    }
    this.#plot?.destroy();
    this.#labels = labels;
    const fmt = this.#o.unit ?? ((v: number) => String(+v.toFixed(2)));
    this.#plot = new uPlot(
      {
        width: this.#width(),
        height: this.#o.height ?? 170,
        legend: { show: true, live: false },
        cursor: { drag: { x: false, y: false } },
        scales: {
          x: { time: true },
          y: this.#o.log ? { distr: 3 } : { range: (_u, lo, hi) => [this.#o.min ?? Math.min(0, lo), this.#o.max ?? Math.max(hi * 1.1, 1e-9)] },
        },
        axes: [
          // Whole seconds at least: points are one a second.
          { stroke: '#9aa5b1', grid: { stroke: '#2a323c' }, ticks: { stroke: '#2a323c' }, incrs: X_INCRS },
          {
            stroke: '#9aa5b1',
            grid: { stroke: '#2a323c', ...(this.#o.log ? { filter: decades } : {}) },
            ticks: { stroke: '#2a323c', ...(this.#o.log ? { filter: decades } : {}) },
            ...(this.#o.log ? { filter: decades } : {}),
            size: 60,
            values: (_u, vals) => vals.map((v) => (v === null ? '' : fmt(v))),
          },
        ],
        series: [{}, ...lines.map((l) => ({ label: l.label, stroke: l.color, width: l.width ?? 1.5, dash: l.dash, points: { show: false }, spanGaps: false }))],
      },
      data,
      this.#el,
    );
  }
}
