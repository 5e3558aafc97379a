/**
 * obd — offline behavior distillation on Deno. The public API, for scripts and notebooks:
 *
 * ```ts
 * import { createRuntime, initBackend, PRESETS, runStudy, writeStudyReport } from "./mod.ts";
 * await initBackend("wasm");
 * const rt = createRuntime({ cacheRoot: "data/cache", backend: "wasm" });
 * const study = await runStudy(rt, "embedded", { methods: ["random", "dbc", "avpbc"] }, PRESETS.quick)();
 * if (study._tag === "Right") await writeStudyReport("data/runs/mine", [study.right], { runName: "mine", backend: "wasm", config: PRESETS.quick });
 * ```
 * @module
 */

// Pipeline runtime
export { type Artifact, createRuntime, runStage, type Runtime, stageKey } from "./pipeline/runtime.ts";
export { defineStage, type Stage, type StageContext } from "./pipeline/stage.ts";
export { ArtifactCache, type Manifest } from "./pipeline/cache.ts";
export { type ErrorKind, formatError, type PipelineError, pipelineError } from "./pipeline/errors.ts";
export { BACKENDS, type BackendInfo, type BackendName, initBackend } from "./pipeline/backend.ts";
export { consoleProgress, type Progress, type ProgressFactory, silentProgress } from "./pipeline/progress.ts";
export { fileMetricsLog, memoryMetricsLog, type MetricsLog } from "./pipeline/metrics.ts";
export { loadCheckpoint, saveCheckpoint } from "./pipeline/checkpoint.ts";
export {
  DEFAULT_METHODS,
  type Method,
  METHODS,
  type MethodRun,
  type PipelineConfig,
  PRESETS,
  runStudy,
  STAGE_NAMES,
  type StageName,
  type StudyOptions,
  type StudyResult,
  UNTIL_STAGES,
  type UntilStage,
  withSeed,
} from "./pipeline/obd.ts";
export { type ReportMeta, studyRunRecords, studySummaryInput, writeStudyReport } from "./pipeline/report.ts";

// Stages
export { EMBEDDED_DATASET, type LoadConfig, loadStage, type LocatedDataset, locateDataset, type OfflineDataset } from "./stages/load.ts";
export { defaultTeacherConfig, type TeacherConfig, teacherStage } from "./stages/teacher.ts";
export { type Teacher, type TeacherArtifact, teacherFromArtifact } from "./stages/teacher/model.ts";
export {
  distill,
  type DistillConfig,
  type DistilledSet,
  distillStage,
  type Objective,
  OBJECTIVES,
  PAPER_DISTILL,
  QUICK_DISTILL,
} from "./stages/distill.ts";
export { metaGradient, studentForward, unrollInnerLoop } from "./stages/distill/metagradient.ts";
export {
  type BaselinesConfig,
  baselinesConfig,
  type BaselinesInputs,
  baselinesStage,
  evaluateBaselines,
  type EvaluateConfig,
  type EvaluationReport,
  evaluateStage,
  evaluateSyntheticSet,
  PAPER_EVALUATE,
  QUICK_EVALUATE,
  type SyntheticSet,
  trainStudent,
} from "./stages/evaluate.ts";
export { stageTimings, summarize, writeSummaryFiles } from "./stages/summarize.ts";
export { computeStateDensity, DEFAULT_DENSITY_CONFIG, type DensityConfig, densityStage, type StateDensity } from "./stages/density.ts";
export { gaussianKdeLogDensity, scottBandwidth, silvermanBandwidth } from "./numerics/kde.ts";

// Environments and datasets
export { ENV_NAMES, ENV_SPECS, type EnvName, LocomotionEnv, normalizedScore, VecLocomotionEnv } from "./envs/locomotion.ts";
export { episodeReturns, observationStats, qlearningView, resolveD4rlAlias, validateD4rl } from "./datasets/d4rl.ts";
export { readD4rlFile, writeD4rlFile } from "./datasets/hdf5.ts";
export { collect, type CollectConfig, DATASET_KINDS, defaultCollectConfig } from "./datasets/collect.ts";
export { Rng } from "./numerics/random.ts";
export { initMlpWeights, mlpForward, type MlpWeights } from "./numerics/mlp.ts";
export { evaluatePolicy } from "./envs/rollout.ts";
