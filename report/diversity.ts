/**
 * The diversity study's report: normalized return against the students' final training loss, one
 * curve per subset with its 95 % bootstrap band (`numerics/statistics.ts`, resampling seeds, then
 * students, then episodes), the subsets' measured diversity and quality, and whether the SDW paper's
 * crossing appears — a diverse subset ahead of the quality subset at large loss and behind it at
 * small loss — judged by paired bootstrap differences (common random numbers: the same students'
 * initializations and start states for every subset) that exclude 0.
 *
 * Pure functions of a `DiversityResult`, plus one writer of the files.
 * @module
 */

import { join } from "node:path";
import { writeFileAtomic } from "../core/atomic.ts";
import {
  bootstrapInterval,
  type Difference,
  interquartileMean,
  mean,
  pairedDifference,
  type ScoreTree,
} from "../numerics/statistics.ts";
import type { SubsetKind, SubsetMeasures, Targets } from "../stages/subsets.ts";
import { type DiversityResult, studyLevels } from "../study/diversity.ts";
import { lineChart, type Series } from "./svg.ts";

/** Labels of the subsets in tables and legends. */
export const SUBSET_LABELS: Readonly<Record<SubsetKind, string>> = {
  random: "Random (reference)",
  quality: "Quality (best episodes)",
  diverse: "Diversity (inverse density)",
  kcenter: "Diversity (k-center)",
};

/** One point of a curve: a subset at a level. */
export interface DiversityPoint {
  /** Whose actions. */
  readonly targets: Targets;
  /** The subset. */
  readonly kind: SubsetKind;
  /** Index of the level. */
  readonly level: number;
  /** Its SGD steps and width. */
  readonly steps: number;
  /** Hidden width. */
  readonly width: number;
  /** Mean final training loss over every student of every seed. */
  readonly loss: number;
  /** Mean normalized return with its 95 % bootstrap interval. */
  readonly mean: number;
  /** Lower end of the interval. */
  readonly low: number;
  /** Upper end of the interval. */
  readonly high: number;
  /** Interquartile mean of the episodes. */
  readonly iqm: number;
  /** Episodes behind it. */
  readonly episodes: number;
}

/** A diverse subset against the quality subset at one level. */
export interface LevelComparison {
  /** Level index. */
  readonly level: number;
  /** Mean training loss of the two subsets' students at that level (their average). */
  readonly loss: number;
  /** mean(diverse) − mean(quality), with its paired 95 % interval. */
  readonly difference: Difference;
}

/** Whether the crossing appears for one diverse subset and one targets. */
export interface Crossing {
  /** Whose actions. */
  readonly targets: Targets;
  /** The diverse subset compared with `quality`. */
  readonly kind: SubsetKind;
  /** Differences by level, in the order of the levels (loss mostly decreasing). */
  readonly levels: readonly LevelComparison[];
  /**
   * `significant`: some level has the diverse subset significantly ahead, and a level of smaller
   * loss has it significantly behind; `point estimates only`: the same with means, intervals
   * containing 0; `none`: neither.
   */
  readonly verdict: "significant" | "point estimates only" | "none";
  /** One sentence saying so. */
  readonly sentence: string;
}

/** Scores of one subset at one level as a tree [stratum][seed][student][episode]. */
function scoreTree(result: DiversityResult, targets: Targets, kind: SubsetKind, level: number): ScoreTree {
  const seeds = result.runs.filter((r) => r.targets === targets && r.kind === kind).map((r) =>
    r.levels[level]?.evaluation?.value.normalized ?? []
  );
  return [seeds];
}

function losses(result: DiversityResult, targets: Targets, kind: SubsetKind, level: number): number[] {
  return result.runs.filter((r) => r.targets === targets && r.kind === kind).flatMap((r) =>
    r.levels[level]?.students.value.finalLoss ?? []
  );
}

/** Every (targets, subset, level) point with its interval. */
export function diversityPoints(
  result: DiversityResult,
  options: { readonly resamples?: number } = {},
): DiversityPoint[] {
  const levels = studyLevels(result.config);
  const out: DiversityPoint[] = [];
  for (const targets of result.config.targets) {
    for (const kind of result.config.subsets) {
      levels.forEach((level, i) => {
        const tree = scoreTree(result, targets, kind, i);
        const flat = (tree as number[][][][])[0].flat(2);
        if (flat.length === 0) return;
        const ci = bootstrapInterval(tree, mean, { resamples: options.resamples ?? 2000, seed: i });
        out.push({
          targets,
          kind,
          level: i,
          steps: level.steps,
          width: level.width,
          loss: mean(losses(result, targets, kind, i)),
          mean: ci.estimate,
          low: ci.low,
          high: ci.high,
          iqm: interquartileMean(flat),
          episodes: flat.length,
        });
      });
    }
  }
  return out;
}

/** Each subset's measures, averaged over seeds. */
export function subsetMeasureRows(
  result: DiversityResult,
): { readonly targets: Targets; readonly kind: SubsetKind; readonly measures: SubsetMeasures }[] {
  const rows = [];
  // Measures do not depend on targets; one row per subset kind (from the first targets).
  const targets = result.config.targets[0];
  for (const kind of result.config.subsets) {
    const runs = result.runs.filter((r) => r.targets === targets && r.kind === kind);
    const avg = (k: keyof SubsetMeasures) => mean(runs.map((r) => r.subset.value.measures[k]));
    rows.push({
      targets,
      kind,
      measures: {
        meanLogDensity: avg("meanLogDensity"),
        coverageRadius: avg("coverageRadius"),
        meanCoverageDistance: avg("meanCoverageDistance"),
        meanReturnToGo: avg("meanReturnToGo"),
        meanEpisodeReturn: avg("meanEpisodeReturn"),
      },
    });
  }
  return rows;
}

/** The crossing test for every diverse subset against `quality`, per targets. */
export function crossings(
  result: DiversityResult,
  options: { readonly resamples?: number } = {},
): Crossing[] {
  if (!result.config.subsets.includes("quality")) return [];
  const levels = studyLevels(result.config);
  const out: Crossing[] = [];
  for (const targets of result.config.targets) {
    for (const kind of result.config.subsets.filter((k) => k === "diverse" || k === "kcenter")) {
      const comparisons: LevelComparison[] = [];
      levels.forEach((_, i) => {
        const a = scoreTree(result, targets, kind, i), b = scoreTree(result, targets, "quality", i);
        if ((a as number[][][][])[0].flat(2).length === 0 || (b as number[][][][])[0].flat(2).length === 0) {
          return;
        }
        comparisons.push({
          level: i,
          loss: (mean(losses(result, targets, kind, i)) + mean(losses(result, targets, "quality", i))) / 2,
          difference: pairedDifference(a, b, mean, true, { resamples: options.resamples ?? 2000, seed: i }),
        });
      });
      // Order by loss, largest first: the paper's claim reads from large loss to small.
      const byLoss = [...comparisons].sort((x, y) => y.loss - x.loss);
      const flips = (ahead: (d: Difference) => boolean, behind: (d: Difference) => boolean) =>
        byLoss.some((c, i) => ahead(c.difference) && byLoss.slice(i + 1).some((l) => behind(l.difference)));
      const verdict: Crossing["verdict"] = flips((d) =>
          d.significant && d.low > 0, (d) => d.significant && d.high < 0)
        ? "significant"
        : flips((d) => d.estimate > 0, (d) => d.estimate < 0)
        ? "point estimates only"
        : "none";
      const label = SUBSET_LABELS[kind];
      const sentence = verdict === "significant"
        ? `${label} is ahead of Quality at a larger training loss and behind it at a smaller one, both with 95% paired intervals excluding 0: the paper's crossing appears (${targets} targets).`
        : verdict === "point estimates only"
        ? `${label} is ahead of Quality at a larger loss and behind at a smaller one in the means only; the 95% paired intervals include 0, so the crossing is not established (${targets} targets).`
        : `No crossing: ${label} is never ahead of Quality at a larger loss than one where it is behind (${targets} targets).`;
      out.push({ targets, kind, levels: comparisons, verdict, sentence });
    }
  }
  return out;
}

/** The figure for one targets: return against log10 training loss, a curve and band per subset. */
export function diversityFigure(
  points: readonly DiversityPoint[],
  targets: Targets,
  dataset: string,
): string {
  const kinds = [...new Set(points.filter((p) => p.targets === targets).map((p) => p.kind))];
  const series: Series[] = kinds.map((kind) => ({
    label: SUBSET_LABELS[kind],
    points: points.filter((p) => p.targets === targets && p.kind === kind && p.loss > 0).map((p) => ({
      x: Math.log10(p.loss),
      y: p.mean,
      low: p.low,
      high: p.high,
    })),
  }));
  return lineChart({
    title: `${dataset}: return vs training loss (${targets} actions)`,
    xLabel: "log10 final BC training loss (students' mean)",
    yLabel: "normalized return (mean, 95% CI)",
    series,
  });
}

const f = (v: number, d = 2) => (Number.isFinite(v) ? v.toFixed(d) : "–");

/** The study's tables as Markdown: subsets' measures, return by level, the crossing. */
export function diversityMarkdown(
  result: DiversityResult,
  points: readonly DiversityPoint[],
  found: readonly Crossing[],
): string {
  const lines: string[] = [];
  const c = result.config;
  lines.push(
    `## Diversity study: ${result.datasetName}`,
    "",
    `${c.size} states per subset, seeds ${
      c.seeds.join(",")
    }, ${c.students} students × ${c.episodes} episodes per subset, level and seed; targets ${
      c.targets.join(", ")
    }.`,
    "",
    "### Subsets",
    "",
    "| subset | mean log-density ↓ more diverse | coverage radius ↓ | mean nearest distance ↓ | mean return-to-go ↑ | mean episode return ↑ |",
    "| --- | ---: | ---: | ---: | ---: | ---: |",
  );
  for (const row of subsetMeasureRows(result)) {
    const m = row.measures;
    lines.push(
      `| ${SUBSET_LABELS[row.kind]} | ${f(m.meanLogDensity)} | ${f(m.coverageRadius)} | ${
        f(m.meanCoverageDistance)
      } | ${f(m.meanReturnToGo, 1)} | ${f(m.meanEpisodeReturn, 1)} |`,
    );
  }
  for (const targets of c.targets) {
    lines.push(
      "",
      `### Normalized return by training level (${targets} actions)`,
      "",
      "| level | steps × width | subset | training loss | return (mean) | 95% CI | IQM |",
      "| ---: | --- | --- | ---: | ---: | --- | ---: |",
    );
    for (const p of points.filter((q) => q.targets === targets).sort((a, b) => a.level - b.level)) {
      lines.push(
        `| ${p.level} | ${p.steps} × ${p.width} | ${SUBSET_LABELS[p.kind]} | ${f(p.loss, 4)} | ${
          f(p.mean, 1)
        } | [${f(p.low, 1)}, ${f(p.high, 1)}] | ${f(p.iqm, 1)} |`,
      );
    }
  }
  if (found.length) {
    lines.push(
      "",
      "### Diversity − quality (paired, 95% CI)",
      "",
      "| targets | subset | level | loss | difference | 95% CI |",
      "| --- | --- | ---: | ---: | ---: | --- |",
    );
    for (const x of found) {
      for (const l of x.levels) {
        lines.push(
          `| ${x.targets} | ${SUBSET_LABELS[x.kind]} | ${l.level} | ${f(l.loss, 4)} | ${
            f(l.difference.estimate, 1)
          } | [${f(l.difference.low, 1)}, ${f(l.difference.high, 1)}]${
            l.difference.significant ? " *" : ""
          } |`,
        );
      }
    }
    lines.push("", ...found.map((x) => `- ${x.sentence}`));
  }
  return lines.join("\n") + "\n";
}

/** The points as CSV. */
export function diversityCsv(points: readonly DiversityPoint[]): string {
  const head = "targets,subset,level,steps,width,loss,mean,low,high,iqm,episodes";
  return [
    head,
    ...points.map((p) =>
      [p.targets, p.kind, p.level, p.steps, p.width, p.loss, p.mean, p.low, p.high, p.iqm, p.episodes].join(
        ",",
      )
    ),
  ].join("\n") + "\n";
}

/** Everything a report holds, computed once. */
export interface DiversityReport {
  /** Curve points. */
  readonly points: DiversityPoint[];
  /** Crossing tests. */
  readonly crossings: Crossing[];
  /** Markdown tables. */
  readonly markdown: string;
  /** One SVG per targets. */
  readonly figures: ReadonlyMap<Targets, string>;
}

/** The report of a diversity study, in memory. */
export function diversityReport(result: DiversityResult): DiversityReport {
  const points = diversityPoints(result);
  const found = crossings(result);
  const figures = new Map(
    result.config.targets.map((t) => [t, diversityFigure(points, t, result.datasetName)]),
  );
  return { points, crossings: found, markdown: diversityMarkdown(result, points, found), figures };
}

/** Writes `report.md`, `diversity.csv`, `diversity.json` and `diversity-<targets>.svg` into `dir`; returns the paths. */
export async function writeDiversityReport(dir: string, report: DiversityReport): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const files: [string, string][] = [
    [
      "report.md",
      report.markdown + [...report.figures.keys()].map((t) => `\n![${t}](diversity-${t}.svg)\n`).join(""),
    ],
    ["diversity.csv", diversityCsv(report.points)],
    [
      "diversity.json",
      JSON.stringify({ points: report.points, crossings: report.crossings }, null, 2) + "\n",
    ],
    ...[...report.figures].map(([t, svg]): [string, string] => [`diversity-${t}.svg`, svg]),
  ];
  for (const [name, text] of files) await writeFileAtomic(join(dir, name), text);
  return files.map(([name]) => join(dir, name));
}
