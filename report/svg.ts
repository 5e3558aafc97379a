/**
 * Plots as hand-written SVG: line charts (with optional interval bands and horizontal reference lines),
 * histograms and scatter plots, sharing one frame — title, axes with "nice" ticks, light grid,
 * axis labels and a legend on the right. No plotting library: the output is a plain string, so a
 * summary stays a pure function and its files can be diffed and checked as XML.
 *
 * Every number written is rounded to 0.01 px (files stay small and byte-stable across platforms);
 * every text is XML-escaped. Non-finite data points are skipped, never written as `NaN`.
 * @module
 */

/** Tableau 10: distinguishable, colour-blind friendly enough, and the matplotlib default. */
export const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ac",
] as const;

/** Escapes text for XML element content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
    .replace(/'/g, "&apos;");
}

/** A number for an attribute: two decimals at most, no trailing zeros, never `-0`. */
function n2(v: number): string {
  const r = Math.round(v * 100) / 100;
  return Object.is(r, -0) ? "0" : String(r);
}

/** A tick step of 1, 2 or 5 × 10^k giving about `count` intervals over `span`. */
function niceStep(span: number, count: number): number {
  const raw = span / Math.max(1, count);
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / magnitude;
  return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
}

/**
 * Tick values covering [min, max] at a 1/2/5 step (about `count` intervals); the first and last tick
 * enclose the data, so they double as the axis range. A degenerate range is widened around its value.
 */
export function niceTicks(min: number, max: number, count = 5): number[] {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [0, 1];
  if (max < min) [min, max] = [max, min];
  if (max === min) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const step = niceStep(max - min, count);
  const start = Math.floor(min / step + 1e-9) * step;
  const end = Math.ceil(max / step - 1e-9) * step;
  const decimals = Math.max(0, -Math.floor(Math.log10(step)) + 1);
  const ticks: number[] = [];
  for (let v = start; v <= end + step * 1e-6; v += step) ticks.push(Number(v.toFixed(decimals)));
  return ticks;
}

/** A tick label: `20k` for thousands on a step of ≥ 1000, otherwise as many decimals as the step needs. */
export function formatTick(v: number, step: number): string {
  if (v === 0) return "0";
  if (step >= 1e6 && v % 1e6 === 0) return `${v / 1e6}M`;
  if (step >= 1e3 && v % 1e3 === 0) return `${v / 1e3}k`;
  const decimals = step > 0 ? Math.max(0, -Math.floor(Math.log10(step) + 1e-9)) : 0;
  return v.toFixed(decimals);
}

/** Size and margins of every plot: the legend lives in the right margin. */
const LAYOUT = { width: 780, height: 420, left: 64, right: 230, top: 44, bottom: 56 } as const;

/** One legend entry: a line (optionally dashed), a box or a dot, in `color`. */
interface LegendEntry {
  readonly label: string;
  readonly color: string;
  readonly kind: "line" | "dashed" | "box" | "dot";
}

interface Frame {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly xTicks: readonly number[];
  readonly yTicks: readonly number[];
  readonly legend: readonly LegendEntry[];
  /** Drawn inside the plot area, clipped to it. */
  readonly body: (x: (v: number) => number, y: (v: number) => number) => string[];
  /** A note in the middle of the plot area (e.g. "no data"). */
  readonly note?: string;
}

/** The shared frame: background, grid, plot body, axes, ticks, labels, title, legend. */
function frame(spec: Frame): string {
  const { width, height, left, right, top, bottom } = LAYOUT;
  const plotW = width - left - right, plotH = height - top - bottom;
  const [x0, x1] = [spec.xTicks[0], spec.xTicks[spec.xTicks.length - 1]];
  const [y0, y1] = [spec.yTicks[0], spec.yTicks[spec.yTicks.length - 1]];
  const x = (v: number) => left + ((v - x0) / (x1 - x0 || 1)) * plotW;
  const y = (v: number) => top + plotH - ((v - y0) / (y1 - y0 || 1)) * plotH;
  const xStep = spec.xTicks.length > 1 ? spec.xTicks[1] - spec.xTicks[0] : 1;
  const yStep = spec.yTicks.length > 1 ? spec.yTicks[1] - spec.yTicks[0] : 1;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<title>${escapeXml(spec.title)}</title>`,
    `<rect x="0" y="0" width="${width}" height="${height}" fill="#ffffff"/>`,
    `<defs><clipPath id="plot-area"><rect x="${left}" y="${top}" width="${plotW}" height="${plotH}"/></clipPath></defs>`,
    `<g class="grid" stroke="#e6e6e6" stroke-width="1">`,
    ...spec.xTicks.map((t) => `<line x1="${n2(x(t))}" y1="${top}" x2="${n2(x(t))}" y2="${top + plotH}"/>`),
    ...spec.yTicks.map((t) => `<line x1="${left}" y1="${n2(y(t))}" x2="${left + plotW}" y2="${n2(y(t))}"/>`),
    `</g>`,
    `<g class="data" clip-path="url(#plot-area)">`,
    ...spec.body(x, y),
    `</g>`,
    `<g class="axes" stroke="#333333" stroke-width="1">`,
    `<line class="x-axis" x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}"/>`,
    `<line class="y-axis" x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}"/>`,
    ...spec.xTicks.map((t) =>
      `<line class="tick" x1="${n2(x(t))}" y1="${top + plotH}" x2="${n2(x(t))}" y2="${top + plotH + 5}"/>`
    ),
    ...spec.yTicks.map((t) =>
      `<line class="tick" x1="${left - 5}" y1="${n2(y(t))}" x2="${left}" y2="${n2(y(t))}"/>`
    ),
    `</g>`,
    `<g class="tick-labels" fill="#333333">`,
    ...spec.xTicks.map((t) =>
      `<text x="${n2(x(t))}" y="${top + plotH + 18}" text-anchor="middle">${
        escapeXml(formatTick(t, xStep))
      }</text>`
    ),
    ...spec.yTicks.map((t) =>
      `<text x="${left - 8}" y="${n2(y(t) + 4)}" text-anchor="end">${escapeXml(formatTick(t, yStep))}</text>`
    ),
    `</g>`,
    `<text class="x-label" x="${n2(left + plotW / 2)}" y="${
      height - 14
    }" text-anchor="middle" font-size="13">${escapeXml(spec.xLabel)}</text>`,
    `<text class="y-label" x="16" y="${
      n2(top + plotH / 2)
    }" text-anchor="middle" font-size="13" transform="rotate(-90 16 ${n2(top + plotH / 2)})">${
      escapeXml(spec.yLabel)
    }</text>`,
    `<text class="title" x="${
      n2(left + plotW / 2)
    }" y="26" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(spec.title)}</text>`,
  );
  if (spec.note) {
    out.push(
      `<text class="note" x="${n2(left + plotW / 2)}" y="${
        n2(top + plotH / 2)
      }" text-anchor="middle" fill="#888888">${escapeXml(spec.note)}</text>`,
    );
  }
  if (spec.legend.length) {
    const lx = left + plotW + 16;
    out.push(`<g class="legend">`);
    spec.legend.forEach((entry, i) => {
      const ly = top + 8 + i * 20;
      if (entry.kind === "box") {
        out.push(
          `<rect x="${lx}" y="${ly - 6}" width="20" height="12" fill="${entry.color}" fill-opacity="0.8"/>`,
        );
      } else if (entry.kind === "dot") {
        out.push(`<circle cx="${lx + 10}" cy="${ly}" r="4" fill="${entry.color}"/>`);
      } else {
        const dash = entry.kind === "dashed" ? ` stroke-dasharray="6 4"` : "";
        out.push(
          `<line x1="${lx}" y1="${ly}" x2="${
            lx + 20
          }" y2="${ly}" stroke="${entry.color}" stroke-width="2"${dash}/>`,
        );
      }
      out.push(`<text x="${lx + 28}" y="${ly + 4}">${escapeXml(entry.label)}</text>`);
    });
    out.push(`</g>`);
  }
  out.push(`</svg>`);
  return out.join("\n") + "\n";
}

/** A point of a line series; `low` and `high` draw a band around it (a confidence interval). */
export interface SeriesPoint {
  readonly x: number;
  readonly y: number;
  readonly low?: number;
  readonly high?: number;
}

/** A line of a chart. */
export interface Series {
  readonly label: string;
  readonly points: readonly SeriesPoint[];
  readonly color?: string;
}

/** A horizontal reference line (a baseline's score). */
export interface ReferenceLine {
  readonly label: string;
  readonly y: number;
  readonly color?: string;
}

/** What {@link lineChart} draws. */
export interface LineChartSpec {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly Series[];
  readonly references?: readonly ReferenceLine[];
}

/** Lines with markers and interval bands, plus dashed horizontal reference lines. */
export function lineChart(spec: LineChartSpec): string {
  const series = spec.series.map((s, i) => ({
    ...s,
    color: s.color ?? PALETTE[i % PALETTE.length],
    points: s.points.filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y)).sort((a, b) => a.x - b.x),
  }));
  const references = (spec.references ?? []).filter((r) => Number.isFinite(r.y)).map((r, i) => ({
    ...r,
    color: r.color ?? PALETTE[(series.length + i) % PALETTE.length],
  }));
  const xs = series.flatMap((s) => s.points.map((p) => p.x));
  const ys = [
    ...series.flatMap((s) =>
      s.points.flatMap((
        p,
      ) => [p.y, ...[p.low, p.high].filter((v): v is number => v !== undefined && Number.isFinite(v))])
    ),
    ...references.map((r) => r.y),
  ];
  const empty = xs.length === 0;
  const xTicks = empty ? [0, 1] : niceTicks(Math.min(...xs), Math.max(...xs), 6);
  const yTicks = ys.length === 0 ? [0, 1] : niceTicks(Math.min(...ys), Math.max(...ys), 5);
  return frame({
    title: spec.title,
    xLabel: spec.xLabel,
    yLabel: spec.yLabel,
    xTicks,
    yTicks,
    note: empty ? "no data" : undefined,
    legend: [
      ...series.map((s) => ({ label: s.label, color: s.color, kind: "line" as const })),
      ...references.map((r) => ({ label: r.label, color: r.color, kind: "dashed" as const })),
    ],
    body: (x, y) => {
      const out: string[] = [];
      for (const s of series) {
        // Points with an interval form the band; an empty interval pinches it rather than skipping the point.
        const banded = s.points.filter((p) => Number.isFinite(p.low) && Number.isFinite(p.high));
        if (banded.length >= 2) {
          const upper = banded.map((p) => `${n2(x(p.x))},${n2(y(p.high!))}`);
          const lower = banded.slice().reverse().map((p) => `${n2(x(p.x))},${n2(y(p.low!))}`);
          out.push(
            `<polygon class="band" points="${
              [...upper, ...lower].join(" ")
            }" fill="${s.color}" fill-opacity="0.15" stroke="none"/>`,
          );
        }
      }
      for (const r of references) {
        out.push(
          `<line class="reference" x1="${LAYOUT.left}" y1="${n2(y(r.y))}" x2="${
            LAYOUT.width - LAYOUT.right
          }" y2="${n2(y(r.y))}" stroke="${r.color}" stroke-width="1.5" stroke-dasharray="6 4"/>`,
        );
      }
      for (const s of series) {
        if (s.points.length >= 2) {
          out.push(
            `<polyline class="series" points="${
              s.points.map((p) => `${n2(x(p.x))},${n2(y(p.y))}`).join(" ")
            }" fill="none" stroke="${s.color}" stroke-width="2"/>`,
          );
        }
        for (const p of s.points) {
          out.push(`<circle class="marker" cx="${n2(x(p.x))}" cy="${n2(y(p.y))}" r="3" fill="${s.color}"/>`);
        }
      }
      return out;
    },
  });
}

/** What {@link histogram} draws. */
export interface HistogramSpec {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel?: string;
  readonly values: ArrayLike<number>;
  readonly bins?: number;
  /** Bin log10 of the values: true, false, or "auto" (when all are positive and span over 100×). */
  readonly log10?: boolean | "auto";
  /** Vertical marker lines (in value units, not log). */
  readonly markers?: readonly { readonly label: string; readonly x: number }[];
  readonly color?: string;
}

/** Bin counts of the finite values over [lo, hi] in `bins` equal bins (the last bin closed). */
export function binCounts(values: ArrayLike<number>, bins: number, lo: number, hi: number): number[] {
  const counts = new Array(bins).fill(0);
  const width = (hi - lo) / bins || 1;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v) || v < lo || v > hi) continue;
    counts[Math.min(bins - 1, Math.floor((v - lo) / width))]++;
  }
  return counts;
}

/** A histogram of the finite values, with optional marker lines (e.g. the mean). */
export function histogram(spec: HistogramSpec): string {
  const bins = spec.bins ?? 40;
  let min = Infinity, max = -Infinity;
  for (let i = 0; i < spec.values.length; i++) {
    const v = spec.values[i];
    if (Number.isFinite(v)) {
      if (v < min) min = v;
      if (v > max) max = v;
    }
  }
  const empty = !(max >= min);
  const log = spec.log10 === "auto" ? !empty && min > 0 && max / min > 100 : Boolean(spec.log10) && min > 0;
  const transform = (v: number) => (log ? Math.log10(v) : v);
  const values = log
    ? Float64Array.from(spec.values as ArrayLike<number>, (v) => (v > 0 ? Math.log10(v) : NaN))
    : spec.values;
  const lo = empty ? 0 : transform(min), hi = empty ? 1 : transform(max);
  const xTicks = niceTicks(lo, hi, 6);
  const counts = empty ? [] : binCounts(values, bins, xTicks[0], xTicks[xTicks.length - 1]);
  const yTicks = niceTicks(0, Math.max(1, ...counts), 5);
  const color = spec.color ?? PALETTE[0];
  const markers = (spec.markers ?? []).filter((m) => Number.isFinite(m.x) && (!log || m.x > 0));
  return frame({
    title: spec.title,
    xLabel: log ? `log10 ${spec.xLabel}` : spec.xLabel,
    yLabel: spec.yLabel ?? "count",
    xTicks,
    yTicks,
    note: empty ? "no data" : undefined,
    legend: [
      { label: `${spec.values.length} values, ${bins} bins`, color, kind: "box" as const },
      ...markers.map((m, i) => ({
        label: m.label,
        color: PALETTE[(i + 1) % PALETTE.length],
        kind: "dashed" as const,
      })),
    ],
    body: (x, y) => {
      const out: string[] = [];
      const width = (xTicks[xTicks.length - 1] - xTicks[0]) / bins;
      counts.forEach((c, i) => {
        if (c === 0) return;
        const left = x(xTicks[0] + i * width), right = x(xTicks[0] + (i + 1) * width);
        out.push(
          `<rect class="bar" x="${n2(left)}" y="${n2(y(c))}" width="${
            n2(Math.max(0.5, right - left - 1))
          }" height="${n2(y(0) - y(c))}" fill="${color}" fill-opacity="0.8"/>`,
        );
      });
      markers.forEach((m, i) => {
        const mx = x(transform(m.x));
        out.push(
          `<line class="marker-line" x1="${n2(mx)}" y1="${LAYOUT.top}" x2="${n2(mx)}" y2="${
            LAYOUT.height - LAYOUT.bottom
          }" stroke="${PALETTE[(i + 1) % PALETTE.length]}" stroke-width="1.5" stroke-dasharray="6 4"/>`,
        );
      });
      return out;
    },
  });
}

/** A group of points of a scatter plot. */
export interface ScatterGroup {
  readonly label: string;
  /** x and y interleaved: [x0, y0, x1, y1, …]. */
  readonly xy: ArrayLike<number>;
  readonly color?: string;
  readonly radius?: number;
  readonly opacity?: number;
  /** Outline the points (makes a small foreground group stand out on a dense background). */
  readonly outline?: boolean;
}

/** What {@link scatterPlot} draws. */
export interface ScatterSpec {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  /** Drawn in order: background groups first. */
  readonly groups: readonly ScatterGroup[];
}

/** Points as circles, one group per legend entry. */
export function scatterPlot(spec: ScatterSpec): string {
  const groups = spec.groups.map((g, i) => ({ ...g, color: g.color ?? PALETTE[i % PALETTE.length] }));
  const xs: number[] = [], ys: number[] = [];
  for (const g of groups) {
    for (let i = 0; i + 1 < g.xy.length; i += 2) {
      if (Number.isFinite(g.xy[i]) && Number.isFinite(g.xy[i + 1])) {
        xs.push(g.xy[i]);
        ys.push(g.xy[i + 1]);
      }
    }
  }
  const empty = xs.length === 0;
  const range = (a: number[]) =>
    a.reduce((r, v) => [Math.min(r[0], v), Math.max(r[1], v)], [Infinity, -Infinity]);
  const [xMin, xMax] = empty ? [0, 1] : range(xs);
  const [yMin, yMax] = empty ? [0, 1] : range(ys);
  return frame({
    title: spec.title,
    xLabel: spec.xLabel,
    yLabel: spec.yLabel,
    xTicks: niceTicks(xMin, xMax, 6),
    yTicks: niceTicks(yMin, yMax, 5),
    note: empty ? "no data" : undefined,
    legend: groups.map((g) => ({
      label: `${g.label} (${Math.floor(g.xy.length / 2)})`,
      color: g.color,
      kind: "dot" as const,
    })),
    body: (x, y) => {
      const out: string[] = [];
      for (const g of groups) {
        const stroke = g.outline ? ` stroke="#222222" stroke-width="0.8"` : "";
        out.push(`<g class="points" fill="${g.color}" fill-opacity="${g.opacity ?? 0.8}"${stroke}>`);
        for (let i = 0; i + 1 < g.xy.length; i += 2) {
          if (!Number.isFinite(g.xy[i]) || !Number.isFinite(g.xy[i + 1])) continue;
          out.push(`<circle cx="${n2(x(g.xy[i]))}" cy="${n2(y(g.xy[i + 1]))}" r="${g.radius ?? 2}"/>`);
        }
        out.push(`</g>`);
      }
      return out;
    },
  });
}
