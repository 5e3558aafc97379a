/**
 * Summarize: the paper's tables, plots and a run report from evaluation reports — a pure function
 * from values to file contents ({@link summarize}). Nothing is written here: the caller writes the
 * returned files (e.g. with {@link writeSummaryFiles}) under `data/runs/<run>/`. Because every file
 * is computed before any is written, a failure never leaves a partial table behind.
 *
 * Every score cell pools the episodes behind it — seeds × students × episodes for a distilled
 * method, repeats × students × episodes for Random selection, policies × episodes for BC — and
 * reports their mean and interquartile mean with 95% bootstrap intervals that resample seeds, then
 * students, then episodes (`numerics/statistics.ts`; datasets are strata in the average column).
 * Differences between methods are paired where the evaluations shared their random numbers (same
 * seeds: same students and start states), and called significant when their interval excludes 0.
 *
 * Tables (each as Markdown, CSV and JSON; arquero does the pivoting and formatting):
 * - `table1_methods`: methods × datasets (OBD Table 1) — Random selection, the distillation
 *   objectives, BC on the whole data, the teacher — with the datasets' average;
 * - `table1_comparisons`: differences between methods, with intervals and significance;
 * - `table1_seeds`: every seed of every method, with the paper's own summary (mean of the last k
 *   points of the learning curve);
 * - `table2_students`, `table3_ensemble`, `table5_size`: Tables 2, 3 and 5 of the paper;
 * - `evaluations`: every run on its own, with raw returns.
 *
 * Plots (SVG, `svg.ts`): normalized return against distillation step per method with interval bands
 * and baselines as dashed lines (Figure 1), the distribution of SDW density weights, and a 2-D PCA
 * of data states against synthetic states.
 * @module
 */

import * as aq from "arquero";
import { join } from "node:path";
import { writeFileAtomic } from "../core/atomic.ts";
import { fail } from "../core/errors.ts";
import { TOOL_VERSION } from "../core/version.ts";
import { ALL_ENV_NAMES, type EnvName } from "../envs/specs.ts";
import { Rng } from "../numerics/random.ts";
import {
  bootstrapInterval,
  type Difference,
  interquartileMean,
  type Interval,
  mean,
  meanStd,
  pairedDifference,
  type ScoreTree,
} from "../numerics/statistics.ts";
import type { BaselinesReport } from "../stages/baselines.ts";
import type { DistilledSet } from "../stages/distill.ts";
import type { EvaluationReport } from "../stages/evaluate.ts";
import { normalizeStates, type OfflineDataset } from "../stages/load.ts";
import { meanScore, type PolicyScores } from "../stages/scores.ts";
import type { SyntheticSet } from "../stages/synset.ts";
import type { TeacherEvaluation } from "../stages/teacher/model.ts";
import { fitPca2, projectPca2 } from "./pca.ts";
import { histogram, lineChart, type ReferenceLine, scatterPlot, type Series } from "./svg.ts";

// ---------------------------------------------------------------------------------------------
// Inputs and outputs
// ---------------------------------------------------------------------------------------------

/** One distilled set (one dataset, objective, size and seed) with what is known about it. */
export interface RunRecord {
  /** The dataset's column label, e.g. `hopper-m-r`. */
  readonly dataset: string;
  /** The distillation seed. */
  readonly seed: number;
  /** The distill stage's output (its losses; its snapshots are scored in `report.curve`). */
  readonly distilled?: Pick<DistilledSet, "env" | "objective" | "size" | "curve">;
  /** The evaluate stage's output for this set. */
  readonly report?: EvaluationReport;
}

/** A dataset's baselines: the baselines stage's report and the teacher's own evaluation. */
export interface BaselineRecord {
  /** The dataset's column label. */
  readonly dataset: string;
  /** Random selection and BC on the whole data. */
  readonly report?: BaselinesReport;
  /** The teacher stage's evaluation of π*, when the study had a teacher. */
  readonly teacher?: Pick<TeacherEvaluation, "normalizedScores" | "episodes">;
  /** What the teacher is, for the table's note (e.g. `TD3+BC, 100000 steps`). */
  readonly teacherLabel?: string;
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
  /** The distilled sets to summarize. */
  readonly runs: readonly RunRecord[];
  /** Each dataset's baselines (once per dataset). */
  readonly baselines?: readonly BaselineRecord[];
  /** The backend the run used (e.g. `wasm+openblas-0.3.21`). */
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
  /** k of the paper's "mean of the last k evaluations" (default 5). */
  readonly lastEvaluations?: number;
  /** Data states drawn for the PCA plot (default 2000). */
  readonly pcaSample?: number;
  /** Bootstrap resamples of every interval (default 2000). */
  readonly resamples?: number;
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

/** One cell of a score table in long form, as written to CSV and JSON. */
export interface TableCell {
  /** Row label (a method, a student variant). */
  readonly row: string;
  /** Column label (a dataset, a size). */
  readonly column: string;
  /** Mean normalized return over the pooled episodes. */
  readonly mean: number;
  /** Lower end of the mean's 95% bootstrap interval. */
  readonly low: number;
  /** Upper end of the mean's 95% bootstrap interval. */
  readonly high: number;
  /** Interquartile mean of the pooled episodes. */
  readonly iqm: number;
  /** Lower end of the IQM's 95% bootstrap interval. */
  readonly iqmLow: number;
  /** Upper end of the IQM's 95% bootstrap interval. */
  readonly iqmHigh: number;
  /** Seeds (repeats, policies) pooled. */
  readonly seeds: number;
  /** Episodes pooled. */
  readonly episodes: number;
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
// Runs, score trees and cells
// ---------------------------------------------------------------------------------------------

interface RunInfo {
  readonly index: number;
  readonly dataset: string;
  readonly env: EnvName;
  readonly objective: string;
  readonly method: string;
  readonly size: number;
  readonly seed: number;
  readonly report?: EvaluationReport;
}

function runInfo(run: RunRecord, index: number): RunInfo {
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
  if (!(ALL_ENV_NAMES as readonly string[]).includes(env)) {
    fail(
      "input",
      `${where} is for an unknown environment "${env}"`,
      `summaries cover ${ALL_ENV_NAMES.join(", ")}`,
    );
  }
  const objective = run.distilled?.objective ?? run.report!.objective;
  return {
    index,
    dataset: run.dataset,
    env,
    objective,
    method: METHOD_LABELS[objective] ?? objective,
    size: run.distilled?.size ?? run.report!.synsetSize,
    seed: run.seed,
    report: run.report,
  };
}

/** Scores of one row in one column: a seed-labelled list of evaluations (each units × episodes). */
interface ScoreSet {
  /** The seed (repeat, policy set) of each evaluation, for pairing. */
  readonly seeds: readonly number[];
  /** Whether seed k's units are the common-random-number students of seed k (distilled sets, Random selection). */
  readonly common?: boolean;
  /** Each evaluation's normalized returns, units × episodes. */
  readonly evaluations: readonly (readonly (readonly number[])[])[];
}

const treeOf = (s: ScoreSet): ScoreTree => [s.evaluations];
const emptySet = (s: ScoreSet | undefined): boolean => !s || s.evaluations.length === 0;

/** The cell statistics of one or more strata (columns) of scores. */
function cellOf(sets: readonly ScoreSet[], resamples: number): Omit<TableCell, "row" | "column"> {
  const tree: ScoreTree = sets.map((s) => s.evaluations);
  const m: Interval = bootstrapInterval(tree, mean, { resamples });
  const q: Interval = bootstrapInterval(tree, interquartileMean, { resamples });
  return {
    mean: m.estimate,
    low: m.low,
    high: m.high,
    iqm: q.estimate,
    iqmLow: q.low,
    iqmHigh: q.high,
    seeds: sets.reduce((a, s) => a + s.evaluations.length, 0),
    episodes: sets.reduce((a, s) => a + s.evaluations.flat(2).length, 0),
  };
}

/** A method's final-set scores on one dataset, one evaluation per seed. */
function finalScores(runs: readonly RunInfo[]): ScoreSet {
  const withFinal = runs.filter((r) => r.report?.final).sort((a, b) => a.seed - b.seed);
  return {
    seeds: withFinal.map((r) => r.seed),
    evaluations: withFinal.map((r) => r.report!.final!.normalized),
    common: true,
  };
}

function policyScoreSet(scores: readonly PolicyScores[], common = false): ScoreSet {
  return { seeds: scores.map((s) => s.seed), evaluations: scores.map((s) => s.normalized), common };
}

/**
 * The two score sets restricted to their common seeds, when both were made with common random
 * numbers and have the same shape there (then paired).
 */
function pairedOn(a: ScoreSet, b: ScoreSet): [ScoreSet, ScoreSet] | undefined {
  if (!a.common || !b.common) return undefined;
  const common = a.seeds.filter((s) => b.seeds.includes(s));
  if (common.length === 0) return undefined;
  const pick = (x: ScoreSet): ScoreSet => ({
    seeds: common,
    evaluations: common.map((s) => x.evaluations[x.seeds.indexOf(s)]),
    common: true,
  });
  const [pa, pb] = [pick(a), pick(b)];
  const same = pa.evaluations.every((e, i) =>
    e.length === pb.evaluations[i].length && e.every((u, j) => u.length === pb.evaluations[i][j].length)
  );
  return same ? [pa, pb] : undefined;
}

/** A − B in mean and IQM, paired on common seeds where possible. */
function compare(a: ScoreSet, b: ScoreSet, resamples: number): { mean: Difference; iqm: Difference } {
  const paired = pairedOn(a, b);
  const [x, y] = paired ?? [a, b];
  return {
    mean: pairedDifference(treeOf(x), treeOf(y), mean, paired !== undefined, { resamples }),
    iqm: pairedDifference(treeOf(x), treeOf(y), interquartileMean, paired !== undefined, { resamples }),
  };
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
  return `${fmt(c.mean)} [${fmt(c.low)}, ${fmt(c.high)}] · IQM ${fmt(c.iqm)}`;
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

const jsonNumbers = (
  _k: string,
  v: unknown,
) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v);

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

/** Pivots long cells into the wide Markdown table (rows in `rowOrder`, columns in `columns`), and writes the long cells as CSV and JSON. */
function makeTable(spec: {
  name: string;
  title: string;
  note: string;
  rowHeader: string;
  cells: TableCell[];
  columns: readonly string[];
  rowOrder: readonly string[];
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
  const table = wide.select(["row", ...spec.columns]).rename({ row: spec.rowHeader });
  const markdown = endLine(`# ${spec.title}\n\n${spec.note}\n\n${table.toMarkdown()}`);
  const numeric = ["mean", "low", "high", "iqm", "iqmLow", "iqmHigh"];
  const csv = endLine(
    aq.from(cells).select("row", "column", ...numeric, "seeds", "episodes")
      .derive(Object.fromEntries(numeric.map((k) => [k, aq.escape((d: any) => round(d[k]))]))).toCSV(),
  );
  const json =
    JSON.stringify({ title: spec.title, note: spec.note, columns: spec.columns, cells }, jsonNumbers, 2) +
    "\n";
  return { name: spec.name, title: spec.title, cells, markdown, csv, json };
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

/** Every row of Table 1 on every dataset: the score sets the table, its comparisons and Figure 1 share. */
function table1Scores(
  runs: readonly RunInfo[],
  baselines: readonly BaselineRecord[],
  datasets: readonly string[],
) {
  const main = mainRuns(runs);
  const rows = new Map<string, Map<string, ScoreSet>>(); // row → dataset → scores
  const put = (row: string, dataset: string, s: ScoreSet | undefined) => {
    if (emptySet(s)) return;
    if (!rows.has(row)) rows.set(row, new Map());
    rows.get(row)!.set(dataset, s!);
  };
  for (const dataset of datasets) {
    const b = baselines.find((x) => x.dataset === dataset);
    if (b?.report?.randomSelection) put(RANDOM, dataset, policyScoreSet(b.report.randomSelection, true));
    for (const [method, group] of groupBy(main.filter((r) => r.dataset === dataset), (r) => r.method)) {
      put(method, dataset, finalScores(group));
    }
    if (b?.report?.bc) put(BC, dataset, policyScoreSet([b.report.bc]));
    if (b?.teacher) {
      put(TEACHER, dataset, { seeds: [0], evaluations: [[Array.from(b.teacher.normalizedScores)]] });
    }
  }
  return { rows, order: [RANDOM, ...methodOrder(runs), BC, TEACHER] };
}

function table1(
  scores: ReturnType<typeof table1Scores>,
  datasets: readonly string[],
  sizes: string,
  resamples: number,
  teacherLabel?: string,
): TableOutput {
  const cells: TableCell[] = [];
  for (const [row, byDataset] of scores.rows) {
    for (const [dataset, s] of byDataset) cells.push({ row, column: dataset, ...cellOf([s], resamples) });
    // The average over datasets, datasets as strata: only for rows measured on all of them.
    if (datasets.length > 1 && byDataset.size === datasets.length) {
      cells.push({ row, column: "avg", ...cellOf(datasets.map((d) => byDataset.get(d)!), resamples) });
    }
  }
  return makeTable({
    name: "table1_methods",
    title: "Table 1 — normalized return of each method on each dataset",
    note:
      `D4RL normalized return (%): mean [95% bootstrap interval] · interquartile mean, over every episode of the final set's fresh students (seeds × students × episodes; intervals resample seeds, students and episodes). Distilled methods: synthetic size ${sizes}. Random selection: N random real pairs trained like a synthetic set (its repeat r is the initial set of seed r). BC: the whole dataset (policies × episodes). Teacher: π*${
        teacherLabel ? ` (${teacherLabel})` : ""
      }, its own evaluation. The CSV and JSON give every interval and the number of seeds and episodes pooled.`,
    rowHeader: "method",
    cells,
    columns: datasets.length > 1 ? [...datasets, "avg"] : datasets,
    rowOrder: scores.order,
  });
}

/** One comparison A − B on one dataset. */
interface Comparison {
  readonly dataset: string;
  readonly a: string;
  readonly b: string;
  readonly mean: Difference;
  readonly iqm: Difference;
}

/** Every distilled method against Random selection and BC, and every pair of distilled methods. */
function comparisons(
  scores: ReturnType<typeof table1Scores>,
  datasets: readonly string[],
  resamples: number,
): Comparison[] {
  const out: Comparison[] = [];
  const distilled = scores.order.filter((r) =>
    r !== RANDOM && r !== BC && r !== TEACHER && scores.rows.has(r)
  );
  for (const dataset of datasets) {
    const at = (row: string) => scores.rows.get(row)?.get(dataset);
    const pairs: [string, string][] = [];
    for (const m of distilled) for (const base of [RANDOM, BC]) pairs.push([m, base]);
    for (let i = 0; i < distilled.length; i++) {
      for (let j = i + 1; j < distilled.length; j++) pairs.push([distilled[i], distilled[j]]);
    }
    for (const [a, b] of pairs) {
      const sa = at(a), sb = at(b);
      if (!sa || !sb) continue;
      out.push({ dataset, a, b, ...compare(sa, sb, resamples) });
    }
  }
  return out;
}

function comparisonsFiles(list: readonly Comparison[]): { markdown: string; csv: string; json: string } {
  const interval = (d: Difference) =>
    `${d.estimate >= 0 ? "+" : ""}${fmt(d.estimate)} [${fmt(d.low)}, ${fmt(d.high)}]`;
  const rows = list.map((c) => ({
    dataset: c.dataset,
    comparison: `${c.a} − ${c.b}`,
    "Δ mean [95% CI]": interval(c.mean),
    "Δ IQM [95% CI]": interval(c.iqm),
    paired: c.mean.paired ? "yes" : "no",
    significant: c.mean.significant ? (c.mean.estimate > 0 ? "yes, higher" : "yes, lower") : "no",
  }));
  const flat = list.map((c) => ({
    dataset: c.dataset,
    a: c.a,
    b: c.b,
    meanDifference: round(c.mean.estimate),
    meanLow: round(c.mean.low),
    meanHigh: round(c.mean.high),
    iqmDifference: round(c.iqm.estimate),
    iqmLow: round(c.iqm.low),
    iqmHigh: round(c.iqm.high),
    paired: c.mean.paired,
    significant: c.mean.significant,
    iqmSignificant: c.iqm.significant,
  }));
  const note =
    "Differences of D4RL normalized return (percentage points), A − B, with 95% bootstrap intervals. Paired: both methods were evaluated with the same seeds' students and start states (common random numbers), and every resample draws the same seeds, students and episodes for both. Significant: the interval of the mean difference excludes 0.";
  return {
    markdown: endLine(
      `# Table 1 — which differences are significant\n\n${note}\n\n${
        rows.length ? aq.from(rows).toMarkdown() : "No two methods to compare."
      }`,
    ),
    csv: endLine(flat.length ? aq.from(flat).toCSV() : "dataset,a,b"),
    json: JSON.stringify({ note, comparisons: flat }, jsonNumbers, 2) + "\n",
  };
}

/** The paper's summary of one run: the mean over the last `k` points of its learning curve (pooled). */
function lastPoints(
  report: EvaluationReport | undefined,
  k: number,
): { mean: number; used: number } | undefined {
  const curve = report?.curve;
  if (!curve?.length) return undefined;
  const tail = curve.slice(-k);
  return { mean: mean(tail.flatMap((p) => p.scores.normalized.flat())), used: tail.length };
}

function seedsFiles(
  runs: readonly RunInfo[],
  k: number,
  resamples: number,
): { markdown: string; csv: string; json: string } {
  const rows = runs.filter((r) => r.report?.final).map((r) => {
    const final = r.report!.final!;
    const cell = cellOf([{ seeds: [r.seed], evaluations: [final.normalized] }], resamples);
    const last = lastPoints(r.report, k);
    return {
      dataset: r.dataset,
      method: r.method,
      N: r.size,
      seed: r.seed,
      ...cell,
      lastK: last?.mean ?? NaN,
      lastKUsed: last?.used ?? 0,
      trainLoss: mean(final.trainLoss ?? []),
    };
  });
  const md = rows.map((r) => ({
    dataset: r.dataset,
    method: r.method,
    N: r.N,
    seed: r.seed,
    "final set: mean [95% CI]": `${fmt(r.mean)} [${fmt(r.low)}, ${fmt(r.high)}]`,
    IQM: fmt(r.iqm),
    [`last ${k} curve points`]: r.lastKUsed ? `${fmt(r.lastK)} (${r.lastKUsed})` : "—",
    "students' BC loss": fmt(r.trainLoss, 4),
  }));
  const note =
    `Every seed of every method: the final set's fresh students (students × episodes), and the paper's own per-seed summary, the mean of the last ${k} points of the learning curve (each point: the same students on the set at that step).`;
  return {
    markdown: endLine(
      `# Table 1 by seed\n\n${note}\n\n${md.length ? aq.from(md).toMarkdown() : "No evaluated set."}`,
    ),
    csv: endLine(
      rows.length
        ? aq.from(
          rows.map((r) =>
            Object.fromEntries(
              Object.entries(r).map(([key, v]) => [key, typeof v === "number" ? round(v) : v]),
            )
          ),
        ).toCSV()
        : "dataset,method",
    ),
    json: JSON.stringify({ note, rows }, jsonNumbers, 2) + "\n",
  };
}

function table2(
  runs: readonly RunInfo[],
  datasets: readonly string[],
  resamples: number,
): TableOutput | undefined {
  const main = mainRuns(runs).filter((r) => r.report?.architectures || r.report?.optimizers);
  if (main.length === 0) return undefined;
  const several = unique(main.map((r) => r.method)).length > 1;
  const label = (
    r: RunInfo,
    v: string,
  ) => (several ? `${r.method} / ${VARIANT_LABELS[v] ?? v}` : VARIANT_LABELS[v] ?? v);
  const items = main.flatMap((r) =>
    [...(r.report!.architectures ?? []), ...(r.report!.optimizers ?? [])].map((v) => ({
      row: label(r, v.name),
      column: r.dataset,
      seed: r.seed,
      score: v.score,
    }))
  );
  const cells = [...groupBy(items, (i) => `${i.row}\u0000${i.column}`).values()].map((group) => ({
    row: group[0].row,
    column: group[0].column,
    ...cellOf([policyScoreSet(group.map((g) => g.score))], resamples),
  }));
  const steps = unique(
    main.flatMap((r) =>
      [...(r.report!.architectures ?? []), ...(r.report!.optimizers ?? [])].map((v) => v.steps)
    ),
  ).join(", ");
  return makeTable({
    name: "table2_students",
    title: "Table 2 — students of other architectures and optimizers on the synthetic set",
    note:
      `D4RL normalized return (%), mean [95% CI] · IQM over seeds × students × episodes. Each student trains ${steps} full-batch steps on the set; architectures with SGD at the protocol's learning rate, optimizers on the default 4-layer MLP.`,
    rowHeader: "student",
    cells,
    columns: datasets.filter((d) => main.some((r) => r.dataset === d)),
    rowOrder: unique(items.map((i) => i.row)),
  });
}

function table3(
  runs: readonly RunInfo[],
  datasets: readonly string[],
  resamples: number,
): TableOutput | undefined {
  const main = mainRuns(runs).filter((r) => r.report?.ensemble);
  if (main.length === 0) return undefined;
  const cells: TableCell[] = [];
  const rows: string[] = [];
  for (const [key, group] of groupBy(main, (r) => `${r.method}\u0000${r.dataset}`)) {
    const [method, dataset] = key.split("\u0000");
    const members = group[0].report!.ensemble!.members;
    const single = finalScores(group);
    const ensemble = policyScoreSet(group.map((r) => r.report!.ensemble!));
    for (
      const [row, s] of [[`${method} · 1 student`, single], [
        `${method} · ensemble of ${members}`,
        ensemble,
      ]] as const
    ) {
      if (emptySet(s)) continue;
      cells.push({ row, column: dataset, ...cellOf([s], resamples) });
      if (!rows.includes(row)) rows.push(row);
    }
  }
  return makeTable({
    name: "table3_ensemble",
    title: "Table 3 — one student against an ensemble of students (actions averaged)",
    note:
      "D4RL normalized return (%) of students trained on the final synthetic set, mean [95% CI] · IQM; the ensemble's members are the first students of each seed.",
    rowHeader: "policy",
    cells,
    columns: datasets.filter((d) => main.some((r) => r.dataset === d)),
    rowOrder: rows,
  });
}

function table5(
  runs: readonly RunInfo[],
  datasets: readonly string[],
  resamples: number,
): TableOutput | undefined {
  const withFinal = runs.filter((r) => r.report?.final);
  if (withFinal.length === 0) return undefined;
  const sizes = unique(withFinal.map((r) => r.size)).sort((a, b) => a - b);
  const cells: TableCell[] = [];
  const rows: string[] = [];
  for (const dataset of datasets) {
    for (const method of methodOrder(withFinal)) {
      const row = `${dataset} · ${method}`;
      for (const size of sizes) {
        const s = finalScores(
          withFinal.filter((r) => r.dataset === dataset && r.method === method && r.size === size),
        );
        if (emptySet(s)) continue;
        cells.push({ row, column: `N=${size}`, ...cellOf([s], resamples) });
        if (!rows.includes(row)) rows.push(row);
      }
    }
  }
  return makeTable({
    name: "table5_size",
    title: "Table 5 — normalized return by synthetic-set size",
    note:
      "D4RL normalized return (%) of the final set's students, mean [95% CI] · IQM over seeds × students × episodes.",
    rowHeader: "dataset · method",
    cells,
    columns: sizes.map((s) => `N=${s}`),
    rowOrder: rows,
  });
}

/** Every run on its own: fresh students (normalized and raw), the paper's last-k summary, ensemble. */
function evaluationsTable(
  runs: readonly RunInfo[],
  k: number,
): { markdown: string; csv: string; json: string } {
  const pm = (s: PolicyScores | undefined) => {
    if (!s) return "—";
    const { mean: m, std } = meanStd(s.normalized.flat());
    return `${fmt(m)} ± ${fmt(std)}`;
  };
  const rows = runs.map((r) => {
    const rep = r.report;
    const last = lastPoints(rep, k);
    const raw = rep?.final ? meanStd(rep.final.returns.flat()) : undefined;
    return {
      dataset: r.dataset,
      method: r.method,
      seed: r.seed,
      N: r.size,
      students: rep?.final?.normalized.length ?? null,
      episodes: rep?.final?.normalized[0]?.length ?? null,
      normalized: rep?.final ? meanScore(rep.final) : null,
      iqm: rep?.final ? interquartileMean(rep.final.normalized.flat()) : null,
      return: raw?.mean ?? null,
      returnStd: raw?.std ?? null,
      lastK: last?.mean ?? null,
      ensemble: rep?.ensemble ? meanScore(rep.ensemble) : null,
      text: {
        plain: pm(rep?.final),
        raw: raw ? `${fmt(raw.mean, 0)} ± ${fmt(raw.std, 0)}` : "—",
        lastK: last ? `${fmt(last.mean)} (${last.used})` : "—",
        ensemble: pm(rep?.ensemble),
      },
    };
  });
  const md = aq.from(rows.map((r) => ({
    dataset: r.dataset,
    method: r.method,
    seed: r.seed,
    N: r.N,
    "students × episodes": r.students ? `${r.students} × ${r.episodes}` : "—",
    "final set": r.text.plain,
    "raw return": r.text.raw,
    [`last ${k} curve points`]: r.text.lastK,
    ensemble: r.text.ensemble,
  })));
  const flat = rows.map(({ text: _text, ...rest }) => rest);
  return {
    markdown: endLine(
      `# Evaluations, run by run\n\nD4RL normalized return (%), mean ± std over all episodes of the evaluation; raw return is the undiscounted episode return.\n\n${md.toMarkdown()}`,
    ),
    csv: endLine(aq.from(flat).toCSV()),
    json: JSON.stringify(flat, jsonNumbers, 2) + "\n",
  };
}

// ---------------------------------------------------------------------------------------------
// Plots
// ---------------------------------------------------------------------------------------------

/** Figure 1 for one dataset: each method's learning curve (mean and 95% band over seeds × students × episodes) and the baselines. */
function figure1(
  runs: readonly RunInfo[],
  dataset: string,
  table: TableOutput,
  resamples: number,
): string | undefined {
  const here = mainRuns(runs).filter((r) => r.dataset === dataset && r.report?.curve?.length);
  if (here.length === 0) return undefined;
  const series: Series[] = [];
  for (const [method, group] of groupBy(here, (r) => r.method)) {
    const steps = unique(group.flatMap((r) => r.report!.curve!.map((p) => p.step))).sort((a, b) => a - b);
    const points = steps.map((step) => {
      const at = group.flatMap((r) =>
        r.report!.curve!.filter((p) => p.step === step).map((p) => ({
          seed: r.seed,
          scores: p.scores.normalized,
        }))
      );
      const c = cellOf([{ seeds: at.map((a) => a.seed), evaluations: at.map((a) => a.scores) }], resamples);
      return { x: step, y: c.mean, low: c.low, high: c.high };
    });
    series.push({ label: `${method} (${group.length} seed${group.length > 1 ? "s" : ""})`, points });
  }
  const references: ReferenceLine[] = [RANDOM, BC, TEACHER].flatMap((row) => {
    const c = table.cells.find((x) => x.row === row && x.column === dataset);
    return c ? [{ label: row, y: c.mean }] : [];
  });
  return lineChart({
    title: `Normalized return during distillation — ${dataset} (95% intervals)`,
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
  const resamples = input.resamples ?? 2000;
  const baselines = input.baselines ?? [];
  if (input.runs.length === 0 && baselines.length === 0) {
    fail("input", "nothing to summarize: no runs", "run the distill (and evaluate) stages first");
  }
  const runs = input.runs.map((r, i) => runInfo(r, i));
  const datasets = unique([...baselines.map((b) => b.dataset), ...runs.map((r) => r.dataset)]);
  const files: Record<string, string> = {};

  const scores = table1Scores(runs, baselines, datasets);
  const sizes = unique(mainRuns(runs).map((r) => r.size)).join(", ") || "—";
  const t1 = table1(
    scores,
    datasets,
    sizes,
    resamples,
    unique(baselines.flatMap((b) => (b.teacherLabel ? [b.teacherLabel] : []))).join("; "),
  );
  const tables: TableOutput[] = [t1];
  for (
    const t of [
      table2(runs, datasets, resamples),
      table3(runs, datasets, resamples),
      table5(runs, datasets, resamples),
    ]
  ) if (t) tables.push(t);
  for (const t of tables) {
    files[`${t.name}.md`] = t.markdown;
    files[`${t.name}.csv`] = t.csv;
    files[`${t.name}.json`] = t.json;
  }
  const compared = comparisons(scores, datasets, resamples);
  const extra: [string, { markdown: string; csv: string; json: string }][] = [
    ["table1_comparisons", comparisonsFiles(compared)],
    ["table1_seeds", seedsFiles(runs, k, resamples)],
    ["evaluations", evaluationsTable(runs, k)],
  ];
  for (const [name, f] of extra) {
    files[`${name}.md`] = f.markdown;
    files[`${name}.csv`] = f.csv;
    files[`${name}.json`] = f.json;
  }

  const plots: { file: string; caption: string }[] = [];
  for (const dataset of datasets) {
    const svg = figure1(runs, dataset, t1, Math.min(resamples, 1000));
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

  files["report.md"] = runReport(
    input,
    runs,
    tables,
    compared,
    files["table1_comparisons.md"],
    plots,
    k,
    densityStats,
  );
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
        seed: r.seed,
        final: r.report?.final ? meanScore(r.report.final) : null,
        lastK: lastPoints(r.report, k)?.mean ?? null,
      })),
      tables: Object.fromEntries(tables.map((t) => [t.name, t.cells])),
      comparisons: compared.map((c) => ({ dataset: c.dataset, a: c.a, b: c.b, mean: c.mean, iqm: c.iqm })),
      timings: input.timings ?? [],
      files: [...Object.keys(files), "summary.json"].sort(),
    },
    jsonNumbers,
    2,
  ) + "\n";
  return { files };
}

function runReport(
  input: SummaryInput,
  runs: readonly RunInfo[],
  tables: readonly TableOutput[],
  compared: readonly Comparison[],
  comparisonsMarkdown: string,
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
  lines.push(
    `| runs | ${runs.length} (${unique(runs.map((r) => r.dataset)).join(", ") || "baselines only"}) |`,
    "",
  );

  lines.push("## Results", "");
  lines.push("D4RL normalized return in percent (0 = random policy, 100 = expert).", "");
  lines.push(tables[0].markdown.replace(/^# /, "### "), "");
  const significant = compared.filter((c) => c.mean.significant);
  lines.push(
    `Of ${compared.length} comparisons, ${significant.length} are significant at 95%: ${
      significant.map((c) =>
        `${c.a} ${c.mean.estimate > 0 ? ">" : "<"} ${c.b} (${c.dataset}, ${fmt(c.mean.estimate)} points)`
      ).join("; ") || "none"
    }.`,
    "",
  );
  lines.push(comparisonsMarkdown.replace(/^# /, "### "), "");
  for (const r of runs) {
    const rep = r.report;
    const parts: string[] = [];
    if (rep?.final) {
      const raw = meanStd(rep.final.returns.flat());
      parts.push(
        `${rep.final.normalized.length} students × ${rep.final.normalized[0]?.length ?? 0} episodes: ${
          fmt(meanScore(rep.final))
        } (raw return ${fmt(raw.mean, 0)} ± ${fmt(raw.std, 0)})`,
      );
    }
    const last = lastPoints(rep, k);
    if (last) parts.push(`mean of the last ${last.used} curve points ${fmt(last.mean)}`);
    if (rep?.ensemble) parts.push(`ensemble of ${rep.ensemble.members}: ${fmt(meanScore(rep.ensemble))}`);
    if (rep) parts.push(`${Math.round(rep.throughput.stepsPerSecond)} environment steps/s in rollouts`);
    lines.push(
      `- **${r.dataset} · ${r.method} · N = ${r.size} · seed ${r.seed}**: ${
        parts.join("; ") || "no evaluation"
      }`,
    );
  }
  lines.push("");

  lines.push("## Tables", "");
  for (const t of tables) {
    lines.push(`- ${t.title}: [Markdown](${t.name}.md) · [CSV](${t.name}.csv) · [JSON](${t.name}.json)`);
  }
  lines.push(
    "- Comparisons between methods: [Markdown](table1_comparisons.md) · [CSV](table1_comparisons.csv) · [JSON](table1_comparisons.json)",
    "- Table 1 by seed: [Markdown](table1_seeds.md) · [CSV](table1_seeds.csv) · [JSON](table1_seeds.json)",
    "- Evaluations, run by run: [Markdown](evaluations.md) · [CSV](evaluations.csv) · [JSON](evaluations.json)",
    "",
  );

  lines.push("## Plots", "");
  if (plots.length === 0) {
    lines.push("No plot: the runs logged no learning curve and no density or states were given.", "");
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
    await writeFileAtomic(path, content);
    written.push(path);
  }
  return written;
}
