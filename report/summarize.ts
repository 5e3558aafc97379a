/**
 * Summarize: the paper's tables, plots and a run report from distillation logs and evaluation
 * reports — a pure function from values to file contents ({@link summarize}). Nothing is written
 * here: the caller writes the returned files (e.g. with {@link writeSummaryFiles}) under
 * `data/runs/<run>/`. Because every file is computed before any is written, a failure (bad input,
 * a failed rollout upstream) never leaves a partial table behind.
 *
 * Tables (each as Markdown, CSV and JSON; arquero does the grouping, pivoting and formatting):
 * - `table1_methods`: methods × datasets (OBD Table 1) — Random selection, the distillation
 *   objectives, BC on the whole data, the teacher — with the datasets' average;
 * - `table2_students`: cross-architecture and cross-optimizer students (Table 2);
 * - `table3_ensemble`: one student against an ensemble (Table 3);
 * - `table5_size`: by synthetic-set size (Table 5);
 * - `evaluations`: every run on its own, with raw returns.
 *
 * Numbers are D4RL normalized returns (percent). A distilled method's value for one seed is the
 * paper's: the mean of the last k (5) evaluations the distillation logged; seeds are then averaged
 * ({@link seedSummary} in evaluate.ts is the same computation). Cells read `mean ± std (n)`: with
 * n ≥ 2, std is over the n seeds (repeats, policies); with n = 1, std is over what that single value
 * averaged (evaluations or episodes), and the CSV/JSON's `std_over` column says which. Stds are
 * population stds (numpy's default).
 *
 * Plots (SVG, `summarize/svg.ts`): normalized return against distillation step per method with
 * baselines as dashed lines (Figure 1), the distribution of SDW density weights, and a 2-D PCA of
 * data states against synthetic states.
 * @module
 */

import * as aq from "arquero";
import { join } from "node:path";
import { ENV_NAMES, type EnvName } from "../envs/locomotion.ts";
import { fail } from "../core/errors.ts";
import { TOOL_VERSION } from "../core/version.ts";
import { Rng } from "../numerics/random.ts";
import type { DistilledSet } from "../stages/distill.ts";
import {
  evaluationLog,
  type EvaluationPoint,
  type EvaluationReport,
  lastEvaluations,
  meanStd,
  type MethodScore,
  type SyntheticSet,
} from "../stages/evaluate.ts";
import { normalizeStates, type OfflineDataset } from "../stages/load.ts";
import { fitPca2, projectPca2 } from "./pca.ts";
import { histogram, lineChart, type ReferenceLine, scatterPlot, type Series } from "./svg.ts";

// ---------------------------------------------------------------------------------------------
// Inputs and outputs
// ---------------------------------------------------------------------------------------------

/** One distillation run (one dataset, objective, size and seed) with what is known about it. */
export interface RunRecord {
  /** The dataset's column label, e.g. `hopper-m-r`. */
  readonly dataset: string;
  /** The distillation seed, for the record (runs of one dataset, objective and size are seeds). */
  readonly seed?: number;
  /** The distill stage's output (its evaluation log is the `curve`). */
  readonly distilled?: Pick<DistilledSet, "env" | "objective" | "size" | "curve" | "finalEvaluation">;
  /** The evaluate stage's output for this set. */
  readonly report?: EvaluationReport;
}

/** Wall-clock time of one stage of the run. */
export interface StageTiming {
  /** Name of the stage. */
  readonly stage: string;
  /** Wall-clock duration of the stage, in seconds. */
  readonly seconds: number;
  /** True when the output came from the cache (its seconds are those of the run that computed it). */
  readonly cached: boolean;
  /** The stage's cache key. */
  readonly key?: string;
  /** The tensor backend the stage ran on. */
  readonly backend?: string;
}

/** Everything a summary is made from. */
export interface SummaryInput {
  /** Name of the run (its directory under data/runs/). */
  readonly runName: string;
  /** The distillation runs to summarize. */
  readonly runs: readonly RunRecord[];
  /** The backend the run used (e.g. `wasm`). */
  readonly backend: string;
  /** The run's configuration, stated in the report. */
  readonly config?: unknown;
  /** Time spent in each stage, for the timing table. */
  readonly timings?: readonly StageTiming[];
  /** SDW density weights ρ(s) of the data, for their histogram. */
  readonly density?: Float32Array;
  /** Data and synthetic states for the PCA plot (synthetic states normalized, as in a set). */
  readonly states?: {
    readonly dataset: Pick<OfflineDataset, "n" | "obsDim" | "observations" | "stateMean" | "stateStd">;
    readonly synthetic: Pick<SyntheticSet, "size" | "obsDim" | "states">;
    readonly label?: string;
  };
  /** k of "mean of the last k evaluations" (default 5). */
  readonly lastEvaluations?: number;
  /** Data states drawn for the PCA plot (default 2000). */
  readonly pcaSample?: number;
  /** Defaults: TOOL_VERSION and now; fixed values make the output reproducible (tests). */
  readonly toolVersion?: string;
  /** Creation time written in the report, ISO 8601. */
  readonly createdAt?: string;
}

/** The summary: file name (relative to the run directory) → content. */
export interface SummaryFiles {
  /** File name (relative to the run directory) → content. */
  readonly files: Record<string, string>;
}

/** One cell of a table in long form, as written to CSV and JSON. */
export interface TableCell {
  readonly row: string;
  readonly column: string;
  readonly mean: number;
  readonly std: number;
  readonly n: number;
  /** What the std is over: seeds, repeats, policies, evaluations or episodes. */
  readonly std_over: string;
}

/** Display names of the distillation objectives (the paper's). */
export const METHOD_LABELS: Readonly<Record<string, string>> = {
  random: "Random selection",
  dbc: "DBC",
  pbc: "PBC",
  avpbc: "Av-PBC",
  sdw: "SDW",
  "sdw-pbc": "SDW-PBC",
};

const RANDOM = "Random selection", BC = "BC (whole data)", TEACHER = "Teacher (offline RL)";

const VARIANT_LABELS: Readonly<Record<string, string>> = {
  "2-layer": "2-layer MLP",
  "3-layer": "3-layer MLP",
  "4-layer": "4-layer MLP (default)",
  "5-layer": "5-layer MLP",
  "6-layer": "6-layer MLP",
  residual: "Residual 4-layer MLP",
  sgd: "SGD (default)",
  adam: "Adam",
  adamw: "AdamW",
  sgdm: "SGD, momentum 0.9",
};

// ---------------------------------------------------------------------------------------------
// Per-run facts and aggregation
// ---------------------------------------------------------------------------------------------

/** A value with the std of what it averaged. */
interface Item {
  readonly value: number;
  readonly std: number;
  readonly over: string;
}

interface RunInfo {
  readonly index: number;
  readonly dataset: string;
  readonly env: EnvName;
  readonly objective: string;
  readonly method: string;
  readonly size: number;
  readonly seed?: number;
  readonly log: EvaluationPoint[];
  /** The run's Table 1 value: last-k mean of its log, else its fresh-student evaluation. */
  readonly headline?: Item & { readonly source: "log" | "fresh students" };
  readonly report?: EvaluationReport;
}

function runInfo(run: RunRecord, index: number, k: number): RunInfo {
  const where = `run ${index} (${run.dataset || "no dataset label"})`;
  if (typeof run.dataset !== "string" || run.dataset.trim() === "") {
    fail("input", `run ${index} has no dataset label`, "give every run the dataset's name, e.g. hopper-m-r");
  }
  if (!run.distilled && !run.report) {
    fail(
      "input",
      `${where} has neither a distilled set nor an evaluation report`,
      "pass the distill stage's output, the evaluate stage's, or both",
    );
  }
  const env = (run.distilled?.env ?? run.report?.env) as EnvName;
  if (!(ENV_NAMES as readonly string[]).includes(env)) {
    fail(
      "input",
      `${where} is for an unknown environment "${env}"`,
      `summaries cover ${ENV_NAMES.join(", ")}`,
    );
  }
  const objective = run.distilled?.objective ?? run.report!.objective;
  const size = run.distilled?.size ?? run.report!.synsetSize;
  const log = run.distilled ? evaluationLog(run.distilled) : run.report!.curve.log;
  let headline: RunInfo["headline"];
  if (log.length > 0) {
    const s = lastEvaluations(log, k);
    headline = { value: s.mean, std: s.std, over: "evaluations", source: "log" };
  } else if (run.report?.plain) {
    headline = {
      value: run.report.plain.meanNormalizedScore,
      std: run.report.plain.stdNormalizedScore,
      over: "episodes",
      source: "fresh students",
    };
  }
  return {
    index,
    dataset: run.dataset,
    env,
    objective,
    method: METHOD_LABELS[objective] ?? objective,
    size,
    seed: run.seed,
    log,
    headline,
    report: run.report,
  };
}

/** Mean ± std over items (std over `unit` when there are several; the item's own std when one). */
function aggregate(items: readonly Item[], unit: string): Omit<TableCell, "row" | "column"> | undefined {
  if (items.length === 0) return undefined;
  if (items.length === 1) return { mean: items[0].value, std: items[0].std, n: 1, std_over: items[0].over };
  const { mean, std } = meanStd(items.map((i) => i.value));
  return { mean, std, n: items.length, std_over: unit };
}

/**
 * A baseline's cell from the scores of several runs: identical evaluations (the same baseline
 * evaluated by several runs of one dataset) count once; then one item per unit (repeat, policy).
 */
function baselineCell(
  scores: readonly (MethodScore | undefined)[],
  unit: string,
): Omit<TableCell, "row" | "column"> | undefined {
  const seen = new Set<string>();
  const unique = scores.filter((s): s is MethodScore => {
    if (!s) return false;
    const key = JSON.stringify(s.normalizedScores);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const perUnit = unique.flatMap((s) => s.perUnit);
  if (perUnit.length === 1) {
    return {
      mean: unique[0].meanNormalizedScore,
      std: unique[0].stdNormalizedScore,
      n: 1,
      std_over: "episodes",
    };
  }
  return aggregate(perUnit.map((v) => ({ value: v, std: 0, over: unit })), unit);
}

function groupBy<T>(items: readonly T[], key: (t: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const item of items) {
    const k = key(item);
    out.set(k, [...(out.get(k) ?? []), item]);
  }
  return out;
}

/** File-name-safe form of a label. */
function slug(label: string): string {
  return label.toLowerCase().replace(/[^a-z0-9._-]+/g, "_").replace(/^_+|_+$/g, "") || "dataset";
}

function fmt(v: number, digits = 1): string {
  return Number.isFinite(v) ? v.toFixed(digits) : String(v);
}

function cellText(c: Omit<TableCell, "row" | "column">): string {
  return `${fmt(c.mean)} ± ${fmt(c.std)} (${c.n})`;
}

// ---------------------------------------------------------------------------------------------
// Tables with arquero
// ---------------------------------------------------------------------------------------------

/** A finished table: its long rows and its three files. */
interface TableOutput {
  readonly name: string;
  readonly title: string;
  readonly cells: TableCell[];
  readonly markdown: string;
  readonly csv: string;
  readonly json: string;
}

/**
 * Pivots long cells into the wide Markdown table (rows in `rowOrder`, columns in `columns`, plus
 * the row average over columns when `average`), and writes the long cells as CSV and JSON.
 */
function makeTable(spec: {
  name: string;
  title: string;
  note: string;
  rowHeader: string;
  cells: TableCell[];
  columns: readonly string[];
  rowOrder: readonly string[];
  average: boolean;
}): TableOutput {
  // Long rows in display order too, so the CSV and JSON read like the Markdown.
  const rank = (list: readonly string[], v: string) => (list.includes(v) ? list.indexOf(v) : list.length);
  const cells = spec.cells.slice().sort((a, b) =>
    rank(spec.rowOrder, a.row) - rank(spec.rowOrder, b.row) ||
    rank(spec.columns, a.column) - rank(spec.columns, b.column)
  );
  const long = aq.from(cells.map((c) => ({ ...c, text: cellText(c) })));
  let wide = long.groupby("row").pivot("column", { text: (d: any) => aq.op.any(d.text) });
  // Missing cells (a method not run on a dataset) read "—", not "undefined".
  wide = wide.derive(Object.fromEntries(spec.columns.map((c) => [c, aq.escape((d: any) => d[c] ?? "—")])));
  const order = new Map(spec.rowOrder.map((r, i) => [r, i]));
  wide = wide.derive({ order_: aq.escape((d: any) => order.get(d.row) ?? order.size) }).orderby("order_");
  let columns = ["row", ...spec.columns];
  if (spec.average) {
    const averages = long.groupby("row").rollup({ avg: aq.op.mean("mean"), k: aq.op.count() });
    const byRow = new Map(averages.objects().map((o: any) => [o.row, o]));
    // The paper's "avg" is over all datasets; a row missing some shows how many it averaged.
    wide = wide.derive({
      avg: aq.escape((d: any) => {
        const a = byRow.get(d.row) as { avg: number; k: number } | undefined;
        return a
          ? (a.k === spec.columns.length ? fmt(a.avg) : `${fmt(a.avg)} (${a.k} of ${spec.columns.length})`)
          : "—";
      }),
    });
    columns = [...columns, "avg"];
  }
  const table = wide.select(columns).rename({ row: spec.rowHeader });
  const markdown = endLine(`# ${spec.title}\n\n${spec.note}\n\n${table.toMarkdown()}`);
  const csvTable = aq.from(cells).select("row", "column", "mean", "std", "n", "std_over");
  const csv = endLine(
    csvTable.derive({ mean: aq.escape((d: any) => round(d.mean)), std: aq.escape((d: any) => round(d.std)) })
      .toCSV(),
  );
  const json = JSON.stringify(
    { title: spec.title, note: spec.note, columns: spec.columns, cells },
    (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v),
    2,
  ) + "\n";
  return { name: spec.name, title: spec.title, cells, markdown, csv, json };
}

/** Text files end with exactly one newline. */
function endLine(text: string): string {
  return text.endsWith("\n") ? text : text + "\n";
}

function round(v: number): number | string {
  return Number.isFinite(v) ? Math.round(v * 1e4) / 1e4 : String(v);
}

/** Distinct values in first-appearance order. */
function unique<T>(values: readonly T[]): T[] {
  return [...new Set(values)];
}

/** Objective labels in the paper's order, then any others in appearance order. */
function methodOrder(runs: readonly RunInfo[]): string[] {
  const known = Object.keys(METHOD_LABELS);
  return unique([
    ...known.filter((o) => runs.some((r) => r.objective === o)),
    ...runs.map((r) => r.objective),
  ]).map((o) => METHOD_LABELS[o] ?? o);
}

/** Table 1's runs: for each dataset, the runs of its largest synthetic size (the paper's 256). */
function mainRuns(runs: readonly RunInfo[]): RunInfo[] {
  const largest = new Map<string, number>();
  for (const r of runs) largest.set(r.dataset, Math.max(largest.get(r.dataset) ?? 0, r.size));
  return runs.filter((r) => r.size === largest.get(r.dataset));
}

function table1(runs: readonly RunInfo[], datasets: readonly string[], k: number): TableOutput {
  const main = mainRuns(runs);
  const cells: TableCell[] = [];
  for (const dataset of datasets) {
    const here = main.filter((r) => r.dataset === dataset);
    const reports = here.map((r) => r.report);
    const random = baselineCell(reports.map((r) => r?.baselines.randomSelection), "repeats");
    if (random) cells.push({ row: RANDOM, column: dataset, ...random });
    for (const [method, group] of groupBy(here, (r) => r.method)) {
      const c = aggregate(group.flatMap((r) => (r.headline ? [r.headline] : [])), "seeds");
      if (c) cells.push({ row: method, column: dataset, ...c });
    }
    const bc = baselineCell(reports.map((r) => r?.baselines.bc), "policies");
    if (bc) cells.push({ row: BC, column: dataset, ...bc });
    const teacher = baselineCell(reports.map((r) => r?.baselines.teacher), "policies");
    if (teacher) cells.push({ row: TEACHER, column: dataset, ...teacher });
  }
  const sizes = unique(main.map((r) => r.size)).join(", ");
  return makeTable({
    name: "table1_methods",
    title: "Table 1 — normalized return of each method on each dataset",
    note:
      `D4RL normalized return (%), mean ± std (n). Distilled methods: the mean of the last ${k} evaluations logged by the distillation, averaged over seeds (n = seeds; synthetic size ${sizes}). Random selection: N random real pairs trained like a synthetic set (n = repeats). BC: the whole dataset (n = policies). With n = 1 the std is over that value's evaluations or episodes (see std_over in the CSV).`,
    rowHeader: "method",
    cells,
    columns: datasets,
    rowOrder: [RANDOM, ...methodOrder(runs), BC, TEACHER],
    average: true,
  });
}

function table2(runs: readonly RunInfo[], datasets: readonly string[]): TableOutput | undefined {
  const main = mainRuns(runs).filter((r) => r.report?.architectures || r.report?.optimizers);
  if (main.length === 0) return undefined;
  const several = unique(main.map((r) => r.method)).length > 1;
  const label = (
    r: RunInfo,
    v: string,
  ) => (several ? `${r.method} / ${VARIANT_LABELS[v] ?? v}` : VARIANT_LABELS[v] ?? v);
  const items: { row: string; column: string; item: Item }[] = [];
  for (const r of main) {
    for (const v of [...(r.report!.architectures ?? []), ...(r.report!.optimizers ?? [])]) {
      items.push({
        row: label(r, v.name),
        column: r.dataset,
        item: { value: v.score.meanNormalizedScore, std: v.score.stdNormalizedScore, over: "episodes" },
      });
    }
  }
  const cells: TableCell[] = [];
  for (const group of groupBy(items, (i) => `${i.row}\u0000${i.column}`).values()) {
    cells.push({
      row: group[0].row,
      column: group[0].column,
      ...aggregate(group.map((g) => g.item), "seeds")!,
    });
  }
  const steps = unique(
    main.flatMap((r) =>
      [...(r.report!.architectures ?? []), ...(r.report!.optimizers ?? [])].map((v) => v.steps)
    ),
  ).join(", ");
  return makeTable({
    name: "table2_students",
    title: "Table 2 — students of other architectures and optimizers on the synthetic set",
    note:
      `D4RL normalized return (%), mean ± std (n = seeds of the distillation; with n = 1, std over episodes). Each student trains ${steps} full-batch steps on the set; architectures with SGD at the protocol's learning rate, optimizers on the default 4-layer MLP.`,
    rowHeader: "student",
    cells,
    columns: datasets.filter((d) => main.some((r) => r.dataset === d)),
    rowOrder: unique(items.map((i) => i.row)),
    average: true,
  });
}

function table3(runs: readonly RunInfo[], datasets: readonly string[]): TableOutput | undefined {
  const main = mainRuns(runs).filter((r) => r.report?.ensemble);
  if (main.length === 0) return undefined;
  const items: { row: string; column: string; item: Item }[] = [];
  for (const r of main) {
    const { plain, ensemble } = r.report!;
    if (plain) {
      items.push({
        row: `${r.method} · 1 student`,
        column: r.dataset,
        item: { value: plain.meanNormalizedScore, std: plain.stdNormalizedScore, over: "episodes" },
      });
    }
    items.push({
      row: `${r.method} · ensemble of ${ensemble!.members}`,
      column: r.dataset,
      item: { value: ensemble!.meanNormalizedScore, std: ensemble!.stdNormalizedScore, over: "episodes" },
    });
  }
  const cells: TableCell[] = [];
  for (const group of groupBy(items, (i) => `${i.row}\u0000${i.column}`).values()) {
    cells.push({
      row: group[0].row,
      column: group[0].column,
      ...aggregate(group.map((g) => g.item), "seeds")!,
    });
  }
  return makeTable({
    name: "table3_ensemble",
    title: "Table 3 — one student against an ensemble of students (actions averaged)",
    note:
      "D4RL normalized return (%) of fresh students trained on the final synthetic set, mean ± std (n = seeds of the distillation; with n = 1, std over episodes).",
    rowHeader: "policy",
    cells,
    columns: datasets.filter((d) => main.some((r) => r.dataset === d)),
    rowOrder: unique(items.map((i) => i.row)),
    average: true,
  });
}

function table5(runs: readonly RunInfo[], datasets: readonly string[], k: number): TableOutput | undefined {
  const withValue = runs.filter((r) => r.headline);
  if (withValue.length === 0) return undefined;
  const sizes = unique(withValue.map((r) => r.size)).sort((a, b) => a - b);
  const cells: TableCell[] = [];
  const rows: string[] = [];
  for (const dataset of datasets) {
    for (const method of methodOrder(withValue)) {
      const row = `${dataset} · ${method}`;
      for (const size of sizes) {
        const group = withValue.filter((r) =>
          r.dataset === dataset && r.method === method && r.size === size
        );
        const c = aggregate(group.map((r) => r.headline!), "seeds");
        if (c) {
          cells.push({ row, column: `N=${size}`, ...c });
          if (!rows.includes(row)) rows.push(row);
        }
      }
    }
  }
  return makeTable({
    name: "table5_size",
    title: "Table 5 — normalized return by synthetic-set size",
    note:
      `D4RL normalized return (%): mean of the last ${k} logged evaluations, mean ± std over seeds (n); with n = 1, std over those evaluations.`,
    rowHeader: "dataset · method",
    cells,
    columns: sizes.map((s) => `N=${s}`),
    rowOrder: rows,
    average: false,
  });
}

/** Every run on its own: the log's summary, fresh students (normalized and raw), ensemble, baselines. */
function evaluationsTable(
  runs: readonly RunInfo[],
  k: number,
): { markdown: string; csv: string; json: string } {
  const pm = (
    s: MethodScore | undefined,
    digits = 1,
  ) => (s ? `${fmt(s.meanNormalizedScore, digits)} ± ${fmt(s.stdNormalizedScore, digits)}` : "—");
  const rows = runs.map((r) => {
    const rep = r.report;
    const tail = r.log.length ? lastEvaluations(r.log, k) : undefined;
    return {
      dataset: r.dataset,
      method: r.method,
      seed: r.seed ?? null,
      N: r.size,
      logged: r.log.length,
      lastK: tail ? tail.mean : null,
      students: rep?.plain ? rep.plain.units : null,
      normalized: rep?.plain?.meanNormalizedScore ?? null,
      normalizedStd: rep?.plain?.stdNormalizedScore ?? null,
      return: rep?.plain?.meanReturn ?? null,
      returnStd: rep?.plain?.stdReturn ?? null,
      ensemble: rep?.ensemble?.meanNormalizedScore ?? null,
      randomSelection: rep?.baselines.randomSelection?.meanNormalizedScore ?? null,
      bc: rep?.baselines.bc?.meanNormalizedScore ?? null,
      teacher: rep?.baselines.teacher?.meanNormalizedScore ?? null,
      text: {
        lastK: tail ? `${fmt(tail.mean)} (${tail.used})` : "—",
        plain: pm(rep?.plain),
        raw: rep?.plain ? `${fmt(rep.plain.meanReturn, 0)} ± ${fmt(rep.plain.stdReturn, 0)}` : "—",
        ensemble: pm(rep?.ensemble),
        random: pm(rep?.baselines.randomSelection),
        bc: pm(rep?.baselines.bc),
        teacher: pm(rep?.baselines.teacher),
      },
    };
  });
  const md = aq.from(rows.map((r) => ({
    dataset: r.dataset,
    method: r.method,
    seed: r.seed ?? "—",
    N: r.N,
    [`last ${k} evals (used)`]: r.text.lastK,
    "fresh students": r.text.plain,
    "raw return": r.text.raw,
    ensemble: r.text.ensemble,
    "random selection": r.text.random,
    BC: r.text.bc,
    teacher: r.text.teacher,
  })));
  const flat = rows.map(({ text: _text, ...rest }) => rest);
  return {
    markdown: endLine(
      `# Evaluations, run by run\n\nD4RL normalized return (%), mean ± std over all episodes of the evaluation; raw return is the undiscounted episode return.\n\n${md.toMarkdown()}`,
    ),
    csv: endLine(aq.from(flat).toCSV()),
    json: JSON.stringify(flat, null, 2) + "\n",
  };
}

// ---------------------------------------------------------------------------------------------
// Plots
// ---------------------------------------------------------------------------------------------

/** Figure 1 for one dataset: each method's logged evaluations (mean ± std over seeds) and the baselines. */
function figure1(runs: readonly RunInfo[], dataset: string, table: TableOutput): string | undefined {
  const here = mainRuns(runs).filter((r) => r.dataset === dataset && r.log.length > 0);
  if (here.length === 0) return undefined;
  const series: Series[] = [];
  for (const [method, group] of groupBy(here, (r) => r.method)) {
    const steps = unique(group.flatMap((r) => r.log.map((p) => p.step))).sort((a, b) => a - b);
    const points = steps.map((step) => {
      const values = group.flatMap((r) => r.log.filter((p) => p.step === step).map((p) => p.score));
      const { mean, std } = meanStd(values);
      return { x: step, y: mean, std: values.length > 1 ? std : undefined };
    });
    series.push({ label: `${method} (${group.length} seed${group.length > 1 ? "s" : ""})`, points });
  }
  const references: ReferenceLine[] = [RANDOM, BC, TEACHER].flatMap((row) => {
    const c = table.cells.find((x) => x.row === row && x.column === dataset);
    return c ? [{ label: row, y: c.mean }] : [];
  });
  return lineChart({
    title: `Normalized return during distillation — ${dataset}`,
    xLabel: "distillation step",
    yLabel: "D4RL normalized return (%)",
    series,
    references,
  });
}

function densityPlot(weights: Float32Array): { svg: string; stats: string } {
  const finite = Float64Array.from(weights).filter(Number.isFinite).sort();
  const q = (p: number) => finite[Math.min(finite.length - 1, Math.floor(p * finite.length))];
  const { mean } = meanStd(Array.from(finite));
  const svg = histogram({
    title: "State density weights ρ(s) of the data",
    xLabel: "weight ρ(s)",
    yLabel: "states",
    values: weights,
    log10: "auto",
    markers: Number.isFinite(mean) ? [{ label: `mean ${fmt(mean, 2)}`, x: mean }] : [],
  });
  const stats = finite.length
    ? `${finite.length} weights: min ${fmt(finite[0], 3)}, median ${fmt(q(0.5), 3)}, 99th percentile ${
      fmt(q(0.99), 3)
    }, max ${fmt(finite[finite.length - 1], 3)}, mean ${fmt(mean, 3)}`
    : "no finite weights";
  return { svg, stats };
}

function pcaPlot(states: NonNullable<SummaryInput["states"]>, sample: number): string {
  const { dataset, synthetic } = states;
  const d = dataset.obsDim;
  if (synthetic.obsDim !== d) {
    fail(
      "input",
      `the synthetic states are ${synthetic.obsDim}-dimensional, the data's ${d}-dimensional`,
      "plot a set distilled from this dataset",
    );
  }
  if (synthetic.size < 1 || synthetic.states.length !== synthetic.size * d) {
    fail(
      "input",
      `the synthetic set holds ${synthetic.states.length} state values for ${synthetic.size} pairs of ${d}`,
      "pass a non-empty set",
    );
  }
  const bad = synthetic.states.findIndex((v) => !Number.isFinite(v));
  if (bad >= 0) {
    fail(
      "input",
      `the synthetic set has a non-finite state value at row ${Math.floor(bad / d)}, column ${bad % d}`,
      "the distillation diverged; distill again",
    );
  }
  // A fixed-seed subsample: the same run always gives the same picture.
  const idx = new Rng(0).sampleWithoutReplacement(dataset.n, Math.min(dataset.n, sample));
  const raw = new Float32Array(idx.length * d);
  idx.forEach((row, r) => raw.set(dataset.observations.subarray(row * d, (row + 1) * d), r * d));
  const data = Float64Array.from(normalizeStates(raw, dataset));
  const pca = fitPca2(data, idx.length, d);
  return scatterPlot({
    title: `Synthetic states against the data${states.label ? ` — ${states.label}` : ""} (PCA)`,
    xLabel: `PC1 (${fmt(100 * pca.explained[0])}% of variance)`,
    yLabel: `PC2 (${fmt(100 * pca.explained[1])}% of variance)`,
    groups: [
      { label: "data states", xy: projectPca2(pca, data, d), color: "#9e9e9e", radius: 1.6, opacity: 0.35 },
      {
        label: "synthetic states",
        xy: projectPca2(pca, synthetic.states, d),
        color: "#e15759",
        radius: 4,
        opacity: 0.9,
        outline: true,
      },
    ],
  });
}

// ---------------------------------------------------------------------------------------------
// The summary
// ---------------------------------------------------------------------------------------------

/**
 * Builds every table, plot and the run report from the run's values; returns all file contents at
 * once (nothing is written). Fails with an `input` error on runs without a dataset label, without
 * any result, of an unknown environment, or a non-finite or mismatched set for the PCA plot.
 */
export function summarize(input: SummaryInput): SummaryFiles {
  const k = input.lastEvaluations ?? 5;
  if (!Number.isInteger(k) || k < 1) {
    fail("config", `summarize.lastEvaluations = ${k} must be a positive integer`);
  }
  if (input.runs.length === 0) {
    fail("input", "nothing to summarize: no runs", "run the distill (and evaluate) stages first");
  }
  const runs = input.runs.map((r, i) => runInfo(r, i, k));
  const datasets = unique(runs.map((r) => r.dataset));
  const files: Record<string, string> = {};

  const tables: TableOutput[] = [];
  const t1 = table1(runs, datasets, k);
  tables.push(t1);
  for (const t of [table2(runs, datasets), table3(runs, datasets), table5(runs, datasets, k)]) {
    if (t) tables.push(t);
  }
  for (const t of tables) {
    files[`${t.name}.md`] = t.markdown;
    files[`${t.name}.csv`] = t.csv;
    files[`${t.name}.json`] = t.json;
  }
  const detail = evaluationsTable(runs, k);
  files["evaluations.md"] = detail.markdown;
  files["evaluations.csv"] = detail.csv;
  files["evaluations.json"] = detail.json;

  const plots: { file: string; caption: string }[] = [];
  for (const dataset of datasets) {
    const svg = figure1(runs, dataset, t1);
    if (svg) {
      const file = `figure1_${slug(dataset)}.svg`;
      files[file] = svg;
      plots.push({ file, caption: `Figure 1 — normalized return against distillation step, ${dataset}` });
    }
  }
  let densityStats: string | undefined;
  if (input.density) {
    const d = densityPlot(input.density);
    files["density_weights.svg"] = d.svg;
    densityStats = d.stats;
    plots.push({ file: "density_weights.svg", caption: "Distribution of the state density weights" });
  }
  if (input.states) {
    files["states_pca.svg"] = pcaPlot(input.states, input.pcaSample ?? 2000);
    plots.push({
      file: "states_pca.svg",
      caption: "Synthetic states against the data states, 2-D PCA of normalized states",
    });
  }

  files["report.md"] = runReport(input, runs, tables, plots, k, densityStats);
  files["summary.json"] = JSON.stringify(
    {
      run: input.runName,
      toolVersion: input.toolVersion ?? TOOL_VERSION,
      backend: input.backend,
      lastEvaluations: k,
      runs: runs.map((r) => ({
        dataset: r.dataset,
        env: r.env,
        objective: r.objective,
        size: r.size,
        seed: r.seed ?? null,
        evaluations: r.log.length,
        headline: r.headline ?? null,
      })),
      tables: Object.fromEntries(tables.map((t) => [t.name, t.cells])),
      timings: input.timings ?? [],
      files: [...Object.keys(files), "summary.json"].sort(),
    },
    (_k, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v),
    2,
  ) + "\n";
  return { files };
}

function runReport(
  input: SummaryInput,
  runs: readonly RunInfo[],
  tables: readonly TableOutput[],
  plots: readonly { file: string; caption: string }[],
  k: number,
  densityStats: string | undefined,
): string {
  const lines: string[] = [];
  const version = input.toolVersion ?? TOOL_VERSION;
  lines.push(`# Run ${input.runName}`, "");
  lines.push("| | |", "| --- | --- |");
  lines.push(`| code version | ${version} |`);
  lines.push(`| tensor backend | ${input.backend} |`);
  lines.push(`| created | ${input.createdAt ?? new Date().toISOString()} |`);
  lines.push(`| runs | ${runs.length} (${unique(runs.map((r) => r.dataset)).join(", ")}) |`, "");

  lines.push("## Results", "");
  for (const r of runs) {
    const parts: string[] = [];
    if (r.log.length) {
      const s = lastEvaluations(r.log, k);
      parts.push(`mean of the last ${s.used} logged evaluations ${fmt(s.mean)}`);
    }
    const rep = r.report;
    if (rep?.plain) {
      parts.push(
        `${rep.plain.units} fresh students × ${rep.plain.episodesPerUnit} episodes: ${
          fmt(rep.plain.meanNormalizedScore)
        } ± ${fmt(rep.plain.stdNormalizedScore)} (raw return ${fmt(rep.plain.meanReturn, 0)} ± ${
          fmt(rep.plain.stdReturn, 0)
        })`,
      );
    }
    if (rep?.ensemble) {
      parts.push(`ensemble of ${rep.ensemble.members}: ${fmt(rep.ensemble.meanNormalizedScore)}`);
    }
    if (rep) parts.push(`${Math.round(rep.throughput.stepsPerSecond)} environment steps/s in rollouts`);
    lines.push(
      `- **${r.dataset} · ${r.method} · N = ${r.size}${r.seed !== undefined ? ` · seed ${r.seed}` : ""}**: ${
        parts.join("; ") || "no evaluation"
      }`,
    );
  }
  lines.push("", "D4RL normalized return in percent (0 = random policy, 100 = expert).", "");
  lines.push(tables[0].markdown.replace(/^# /, "### "), "");

  lines.push("## Tables", "");
  for (const t of tables) {
    lines.push(`- ${t.title}: [Markdown](${t.name}.md) · [CSV](${t.name}.csv) · [JSON](${t.name}.json)`);
  }
  lines.push(
    "- Evaluations, run by run: [Markdown](evaluations.md) · [CSV](evaluations.csv) · [JSON](evaluations.json)",
    "",
  );

  lines.push("## Plots", "");
  if (plots.length === 0) {
    lines.push("No plot: the runs logged no evaluation and no density or states were given.", "");
  }
  for (const p of plots) {
    lines.push(`![${p.caption}](${p.file})`, "", `*${p.caption}* — [${p.file}](${p.file})`, "");
  }
  if (densityStats) lines.push(`Density weights: ${densityStats}.`, "");

  lines.push("## Wall-clock time per stage", "");
  const timings = input.timings ?? [];
  if (timings.length === 0) lines.push("Not recorded.", "");
  else {
    lines.push("| stage | seconds | from cache | key | backend |", "| --- | ---: | --- | --- | --- |");
    for (const t of timings) {
      lines.push(
        `| ${t.stage} | ${fmt(t.seconds, 1)} | ${t.cached ? "yes" : "no"} | ${t.key ?? ""} | ${
          t.backend ?? ""
        } |`,
      );
    }
    const computed = timings.filter((t) => !t.cached).reduce((s, t) => s + t.seconds, 0);
    const all = timings.reduce((s, t) => s + t.seconds, 0);
    lines.push(
      "",
      `Computed in this run: ${fmt(computed, 1)} s; all stages as first computed: ${
        fmt(all, 1)
      } s (a cached stage shows the time of the run that computed it).`,
      "",
    );
  }

  lines.push("## Configuration", "");
  lines.push("```json", JSON.stringify(input.config ?? null, null, 2), "```", "");
  return lines.join("\n");
}

/** Stage timings from runtime artifacts (their manifests hold the seconds, key and backend). */
export function stageTimings(
  artifacts: readonly {
    readonly stage: string;
    readonly key: string;
    readonly fromCache: boolean;
    readonly manifest: { readonly timings: { readonly seconds: number }; readonly backend: string };
  }[],
): StageTiming[] {
  return artifacts.map((a) => ({
    stage: a.stage,
    seconds: a.manifest.timings.seconds,
    cached: a.fromCache,
    key: a.key,
    backend: a.manifest.backend,
  }));
}

/**
 * Writes a summary's files into `dir` (created if needed). Each file goes to a temporary name and is
 * renamed into place, so a reader never sees a half-written table.
 */
export async function writeSummaryFiles(dir: string, summary: SummaryFiles): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const written: string[] = [];
  for (const [name, content] of Object.entries(summary.files)) {
    if (name.includes("/") || name.includes("\\") || name.startsWith(".")) {
      fail("internal", `summary file name ${name} is not a plain file name`);
    }
    const path = join(dir, name);
    const temp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    await Deno.writeTextFile(temp, content);
    await Deno.rename(temp, path);
    written.push(path);
  }
  return written;
}
