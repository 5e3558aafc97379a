/**
 * The report of one or more studies (one dataset and seed each): turns their cached artifacts into
 * the summary's runs and writes tables, plots and `report.md` into a run directory. The pipeline and
 * grid commands share it, so a grid's report reads exactly like a single run's.
 * @module
 */

import { join } from "node:path";
import type { Artifact } from "../core/runtime.ts";
import type { PipelineConfig, StudyResult } from "../study/obd.ts";
import {
  type BaselineRecord,
  type RunRecord,
  stageTimings,
  summarize,
  type SummaryInput,
  writeSummaryFiles,
} from "./summarize.ts";

/** What a report says about how it was made. */
export interface ReportMeta {
  /** Name of the run (its directory under data/runs/). */
  readonly runName: string;
  /** The tensor backend the numbers were computed on. */
  readonly backend: string;
  /** The run's configuration, stated in the report. */
  readonly config: PipelineConfig;
}

/** The summary's runs: one per distilled set of every study. */
export function studyRunRecords(results: readonly StudyResult[]): RunRecord[] {
  return results.flatMap((r) =>
    r.runs.flatMap((m) =>
      m.distilled
        ? [{
          dataset: r.datasetName,
          seed: m.seed,
          distilled: m.distilled.value,
          ...(m.evaluation ? { report: m.evaluation.value } : {}),
        }]
        : []
    )
  );
}

/** Each dataset's baselines once (studies of one dataset share them): the baselines stage's report and the teacher's own evaluation. */
export function studyBaselineRecords(results: readonly StudyResult[]): BaselineRecord[] {
  const seen = new Set<string>();
  return results.flatMap((r) => {
    const id = `${r.datasetName}/${r.baselines?.key ?? ""}/${r.teacher?.key ?? ""}`;
    if (seen.has(id) || (!r.baselines && !r.teacher)) return [];
    seen.add(id);
    const t = r.teacher?.value;
    return [{
      dataset: r.datasetName,
      ...(r.baselines ? { report: r.baselines.value } : {}),
      ...(t?.evaluation
        ? {
          teacher: t.evaluation,
          teacherLabel: `${
            t.algorithm === "td3bc" ? "TD3+BC" : t.algorithm === "calql" ? "Cal-QL" : t.algorithm
          }, ${t.source === "trained" ? `${t.training.steps} steps` : t.source}`,
        }
        : {}),
    }];
  });
}

/** Every stage artifact of the studies, each once (shared upstream stages appear in many). */
function artifactsOf(results: readonly StudyResult[]): Artifact<unknown>[] {
  const all = results.flatMap((r): (Artifact<unknown> | undefined)[] => [
    r.dataset,
    r.teacher,
    r.density,
    r.baselines,
    ...r.runs.flatMap((m) => [m.distilled, m.evaluation]),
  ]).filter((a): a is Artifact<unknown> => a !== undefined);
  return [...new Map(all.map((a) => [`${a.stage}/${a.key}`, a])).values()];
}

/** The summary's input for studies: their runs, timings, the first SDW density and a set for the PCA plot. */
export function studySummaryInput(results: readonly StudyResult[], meta: ReportMeta): SummaryInput {
  const first = results[0];
  const density = results.find((r) => r.density)?.density;
  const sets = first?.runs.flatMap((m) => (m.distilled ? [m] : [])) ?? [];
  // The PCA plot shows one set: the last method's (the demo's order ends with SDW).
  const shown = sets[sets.length - 1];
  return {
    runName: meta.runName,
    runs: studyRunRecords(results),
    baselines: studyBaselineRecords(results),
    backend: meta.backend,
    config: meta.config,
    timings: stageTimings(artifactsOf(results)),
    ...(density ? { density: density.value.weight } : {}),
    ...(first && shown?.distilled
      ? {
        states: {
          dataset: first.dataset.value,
          synthetic: shown.distilled.value,
          label: `${shown.method}, ${first.datasetName}`,
        },
      }
      : {}),
    lastEvaluations: meta.config.evaluate.lastEvaluations,
  };
}

/** Summarizes the studies and writes every file into `dir`; returns the paths written. */
export async function writeStudyReport(
  dir: string,
  results: readonly StudyResult[],
  meta: ReportMeta,
): Promise<string[]> {
  return await writeSummaryFiles(dir, summarize(studySummaryInput(results, meta)));
}

/** The path of a report's Table 1 in Markdown. */
export function table1Path(dir: string): string {
  return join(dir, "table1_methods.md");
}
