/**
 * The OBD pipeline as one fp-ts composition: load → teacher → density → distill → evaluate, then
 * `summarize` (a pure function from the results to tables, plots and a report, written by the command). Each arrow is `runStage`, so every stage is cached by its content hash and the first
 * failure short-circuits the rest. A stage is run only when the chosen objective needs it (DBC needs
 * no teacher; only SDW needs densities), so its output never enters a cache key it does not affect.
 * Stages not yet implemented in this version are absent, not faked.
 * @module
 */

import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { type DistillConfig, type DistilledSet, distillStage, PAPER_DISTILL, QUICK_DISTILL, requirements } from "../stages/distill.ts";
import { type LocatedDataset, locateDataset, loadStage, type OfflineDataset } from "../stages/load.ts";
import { defaultTeacherConfig, type TeacherConfig, teacherStage } from "../stages/teacher.ts";
import { DEFAULT_DENSITY_CONFIG, type DensityConfig, densityStage, type StateDensity } from "../stages/density.ts";
import { type EvaluateConfig, type EvaluationReport, evaluateStage, PAPER_EVALUATE, QUICK_EVALUATE } from "../stages/evaluate.ts";
import type { TeacherArtifact } from "../stages/teacher/model.ts";
import { type PipelineError, toPipelineError } from "./errors.ts";
import { type Artifact, runStage, type Runtime } from "./runtime.ts";

/** The whole configuration of a run, one section per stage. */
export interface PipelineConfig {
  readonly load: { readonly minTransitions: number };
  readonly teacher: TeacherConfig;
  readonly density: DensityConfig;
  readonly distill: DistillConfig;
  readonly evaluate: EvaluateConfig;
}

/** Named configurations: `quick` for a laptop demo, `paper` for the published settings. */
export const PRESETS: Readonly<Record<string, PipelineConfig>> = {
  quick: {
    load: { minTransitions: 5_000 },
    // TD3+BC on the embedded dataset scores ≈ 11.8 from 6k to 24k steps and collapses later (measured).
    teacher: { ...defaultTeacherConfig("td3bc"), steps: 8_000, evalEpisodes: 5 },
    density: DEFAULT_DENSITY_CONFIG,
    distill: QUICK_DISTILL,
    evaluate: QUICK_EVALUATE,
  },
  paper: {
    load: { minTransitions: 5_000 },
    teacher: { ...defaultTeacherConfig("td3bc"), steps: 1_000_000 },
    density: DEFAULT_DENSITY_CONFIG,
    distill: PAPER_DISTILL,
    evaluate: PAPER_EVALUATE,
  },
};

/** Names of the stages this version runs, in order (valid values of `--force`). */
export const STAGE_NAMES = ["load", "teacher", "density", "distill", "evaluate"] as const;

/** Everything a run produced. */
export interface PipelineResult {
  readonly located: LocatedDataset;
  readonly dataset: Artifact<OfflineDataset>;
  readonly teacher?: Artifact<TeacherArtifact>;
  readonly density?: Artifact<StateDensity>;
  readonly distilled: Artifact<DistilledSet>;
  readonly evaluation: Artifact<EvaluationReport>;
}

/** Finds the dataset and runs the stages on it. */
export function runPipeline(rt: Runtime, datasetName: string, config: PipelineConfig): TE.TaskEither<PipelineError, PipelineResult> {
  const needs = requirements(config.distill.objective);
  const needsTeacher = needs.teacher || config.distill.init === "top-q";
  return pipe(
    TE.tryCatch(() => locateDataset(datasetName, rt.progress), (e) => ({ ...toPipelineError(e), stage: "load" })),
    TE.bindTo("located"),
    TE.bind("dataset", ({ located }) =>
      runStage(rt, loadStage, { file: located.file, sha256: located.sha256, env: located.env, minTransitions: config.load.minTransitions }, {})),
    TE.bind("teacher", ({ dataset }) =>
      needsTeacher ? pipe(runStage(rt, teacherStage, config.teacher, { dataset }), TE.map((t) => t as Artifact<TeacherArtifact> | undefined)) : TE.right(undefined)),
    TE.bind("density", ({ dataset }) =>
      needs.density
        ? pipe(runStage(rt, densityStage, config.density, { dataset }), TE.map((d) => d as Artifact<StateDensity> | undefined))
        : TE.right(undefined)),
    TE.bind("distilled", ({ dataset, teacher, density }) =>
      runStage(rt, distillStage, config.distill, { dataset, ...(teacher ? { teacher } : {}), ...(density ? { density } : {}) })),
    TE.bind("evaluation", ({ dataset, teacher, distilled }) =>
      runStage(rt, evaluateStage, config.evaluate, teacher ? { dataset, distilled, teacher } : { dataset, distilled })),
  );
}
