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
export { type Artifact, createRuntime, runStage, type Runtime, stageKey } from "./core/runtime.ts";
export { type CheckpointStore, defineStage, keyConfig, type Stage, type StageContext } from "./core/stage.ts";
export { type ResumableLoop, runResumable } from "./core/loop.ts";
export { writeAtomic, writeFileAtomic, writeJsonAtomic } from "./core/atomic.ts";
export { ArtifactCache, type Manifest } from "./core/cache.ts";
export { type ErrorKind, formatError, type PipelineError, pipelineError } from "./core/errors.ts";
export {
  type BackendInfo,
  type BackendName,
  type BackendOptions,
  BACKENDS,
  initBackend,
} from "./numerics/backend.ts";
export { consoleProgress, type Progress, type ProgressFactory, silentProgress } from "./core/progress.ts";
export { fileMetricsLog, memoryMetricsLog, type MetricsLog } from "./core/metrics.ts";
export { directoryCheckpoint, loadCheckpoint, saveCheckpoint } from "./core/checkpoint.ts";
export {
  baselinesConfig,
  DEFAULT_METHODS,
  distillConfig,
  type Method,
  type MethodRun,
  METHODS,
  type PipelineConfig,
  presetConfig,
  PRESETS,
  runStudy,
  SHIPPED_TEACHER_DIR,
  STAGE_NAMES,
  type StageName,
  type StudyOptions,
  type StudyResult,
  type TeacherSettings,
  UNTIL_STAGES,
  type UntilStage,
  validateStudy,
  withSeed,
} from "./study/obd.ts";
export {
  type ReportMeta,
  studyBaselineRecords,
  studyRunRecords,
  studySummaryInput,
  writeStudyReport,
} from "./report/report.ts";
export {
  EXECUTORS,
  expandGrid,
  type GridSpec,
  type GridTask,
  parseGridArgs,
  type TaskOutcome,
} from "./grid/spec.ts";
export { runLocal } from "./grid/local.ts";
export { runSlurm, slurmScript } from "./grid/slurm_executor.ts";
export { acquireLock, DEFAULT_LOCK_OPTIONS, type LockOptions } from "./core/lock.ts";
export {
  arrayTaskStates,
  renderArrayScript,
  slurmAvailable,
  submitArray,
  waitForArray,
} from "./grid/slurm.ts";

// Stages
export {
  datasetMeanScore,
  EMBEDDED_DATASET,
  type LoadConfig,
  loadStage,
  locateDataset,
  type LocatedDataset,
  type LocateOptions,
  normalizeStates,
  type OfflineDataset,
  scoreScale,
} from "./stages/load.ts";
export {
  defaultTeacherConfig,
  type TeacherConfig,
  type TeacherImportConfig,
  type TeacherImportKind,
  teacherStage,
  type TeacherStageConfig,
} from "./stages/teacher.ts";
export {
  type Teacher,
  type TeacherArtifact,
  type TeacherCurvePoint,
  teacherFromArtifact,
} from "./stages/teacher/model.ts";
export {
  distill,
  type DistillConfig,
  type DistilledSet,
  type DistillSettings,
  distillStage,
  type Objective,
  OBJECTIVES,
  PAPER_DISTILL,
  QUICK_DISTILL,
} from "./stages/distill.ts";
export { metaGradient, studentForward, unrollInnerLoop } from "./stages/distill/metagradient.ts";
export {
  MetaGradientPool,
  requestedMetaGradientThreads,
  THREADS_ENV,
} from "./stages/distill/metagradient_pool.ts";
export {
  ensemblePolicy,
  PAPER_STUDENT,
  type StudentConfig,
  studentProtocol,
  trainStudent,
  validateStudentConfig,
} from "./stages/student.ts";
export { fitStudent } from "./stages/student_fit.ts";
export { randomRealSet, type SyntheticSet, validateSyntheticSet } from "./stages/synset.ts";
export { readSynsetFile, type SynsetFile, writeSynsetFile } from "./stages/synset_file.ts";
export { episodeSeed, meanScore, type PolicyScores, scoreSet, studentSeed } from "./stages/scores.ts";
export {
  evaluate,
  type EvaluateSettings,
  evaluateStage,
  type EvaluationReport,
  PAPER_EVALUATE,
  type SetEvaluationConfig,
  setEvaluationConfig,
} from "./stages/evaluate.ts";
export {
  type BaselinesConfig,
  type BaselinesReport,
  baselinesStage,
  evaluateBaselines,
  table4BcSteps,
} from "./stages/baselines.ts";
export { stageTimings, summarize, writeSummaryFiles } from "./report/summarize.ts";
export {
  computeStateDensity,
  DEFAULT_DENSITY_CONFIG,
  type DensityConfig,
  densityStage,
  type StateDensity,
} from "./stages/density.ts";
export { gaussianKdeLogDensity, scottBandwidth, silvermanBandwidth } from "./numerics/kde.ts";

// The diversity study (state diversity against state quality as the training loss varies)
export {
  coverage,
  returnsToGo,
  selectInverseDensity,
  selectKCenter,
  selectQuality,
  selectSubset,
  type Subset,
  SUBSET_KINDS,
  type SubsetConfig,
  type SubsetKind,
  type SubsetMeasures,
  subsetStage,
  TARGETS,
  type Targets,
  validateSubsetConfig,
  viewEpisodes,
} from "./stages/subsets.ts";
export {
  evaluateSubsetStudents,
  type StudentLevel,
  type SubsetEvaluationConfig,
  subsetEvaluationStage,
  type SubsetStudents,
  type SubsetStudentsConfig,
  subsetStudentsStage,
  trainSubsetStudents,
  validateSubsetEvaluationConfig,
  validateSubsetStudentsConfig,
} from "./stages/subset_students.ts";
export {
  DIVERSITY_PRESETS,
  DIVERSITY_UNTIL,
  type DiversityConfig,
  diversityConfig,
  type DiversityResult,
  type LevelRun,
  runDiversityStudy,
  studyLevels,
  subsetConfig,
  type SubsetRun,
  validateDiversityConfig,
} from "./study/diversity.ts";
export {
  type Crossing,
  crossings,
  diversityCsv,
  diversityFigure,
  diversityMarkdown,
  type DiversityPoint,
  diversityPoints,
  type DiversityReport,
  diversityReport,
  type LevelComparison,
  SUBSET_LABELS,
  subsetMeasureRows,
  writeDiversityReport,
} from "./report/diversity.ts";

// Environments and datasets
export {
  ALL_ENV_NAMES,
  type D4rlEnvName,
  ENV_NAMES,
  ENV_SPECS,
  envBody,
  type EnvName,
  envOfGymId,
  normalizedScore,
  V5_ENV_NAMES,
  type V5EnvName,
} from "./envs/specs.ts";
export { LocomotionEnv, VecLocomotionEnv } from "./envs/locomotion.ts";
export {
  episodeReturns,
  observationStats,
  qlearningView,
  resolveD4rlAlias,
  validateD4rl,
} from "./datasets/d4rl.ts";
export { readD4rlFile, writeD4rlFile } from "./datasets/hdf5.ts";
export { collect, type CollectConfig, DATASET_KINDS, defaultCollectConfig } from "./datasets/collect.ts";
export { deriveSeed, Rng } from "./numerics/random.ts";
export {
  bootstrapInterval,
  interquartileMean,
  mean,
  meanStd,
  pairedDifference,
  type ScoreTree,
} from "./numerics/statistics.ts";
export { initMlpWeights, mlpForward, type MlpWeights } from "./numerics/mlp.ts";
export { evaluatePolicy } from "./envs/rollout.ts";

// Types the API above refers to
export type { ArtifactInputs } from "./core/runtime.ts";
export type { Lookup } from "./core/cache.ts";
export type { Executor, GridReporter, GridRequest } from "./grid/spec.ts";
export type { GridRecord, GridStatus } from "./grid/record.ts";
export type { SlurmScriptOptions } from "./grid/slurm_executor.ts";
export type { HeldLock, LockHolder } from "./core/lock.ts";
export type { ArrayScriptOptions, JobState, SubmitOptions, TaskStatus, WaitOptions } from "./grid/slurm.ts";
export type { ConsoleProgressOptions } from "./core/progress.ts";
export type {
  BaselineRecord,
  RunRecord,
  StageTiming,
  SummaryFiles,
  SummaryInput,
  TableCell,
} from "./report/summarize.ts";
export type { AtomicOptions } from "./core/atomic.ts";
export type { FittedStudent } from "./stages/student_fit.ts";
export { RolloutTally } from "./stages/scores.ts";
export type { CurvePoint, DistillInputs, SetSnapshot, SynsetInit } from "./stages/distill.ts";
export { INITS } from "./stages/distill.ts";
export type {
  InnerLoopOptions,
  InnerTrajectory,
  MetaGradient,
  OuterBatch,
  StepRecord,
  StudentParams,
} from "./stages/distill/metagradient.ts";
export type {
  MetaGradientProblem,
  MetaGradientValues,
  ReduceTiming,
} from "./stages/distill/metagradient_pool.ts";
export type { CurveScore, EvaluateInputs, EvaluationSwitches, VariantScore } from "./stages/evaluate.ts";
export type { Student, StudentArchitecture, StudentProtocol, TrainedStudent } from "./stages/student.ts";
export type {
  OptimizerSettings,
  StudentOptimizer,
  StudentTraining,
  TrainingPairs,
} from "./stages/student_fit.ts";
export type { EvaluationSize, ScoredUnit } from "./stages/scores.ts";
export type { BootstrapOptions, Difference, Interval, Statistic } from "./numerics/statistics.ts";
export type {
  ActMode,
  GaussianHead,
  TeacherActor,
  TeacherAlgorithm,
  TeacherEvaluation,
} from "./stages/teacher/model.ts";
export { TEACHER_FORMAT, TEACHER_FORMAT_VERSION } from "./stages/teacher/model.ts";
export type { Td3bcConfig } from "./stages/teacher/td3bc.ts";
export type { CalqlConfig } from "./stages/teacher/calql.ts";
export type { EnvSpec } from "./envs/specs.ts";
export type { StepResult, VecStepResult } from "./envs/locomotion.ts";
export type { BatchPolicy, Evaluation, ScoreReference } from "./envs/rollout.ts";
export type {
  D4rlDataset,
  D4rlDatasetInfo,
  D4rlEnv,
  D4rlKind,
  EpisodeReturns,
  ObservationStats,
  QLearningView,
  ValidateOptions,
} from "./datasets/d4rl.ts";
export type {
  AttrValue,
  D4rlArrays,
  H5Array,
  RawD4rlDatasets,
  RawD4rlFile,
  WritableAttr,
} from "./datasets/hdf5.ts";
export type { BehaviourPolicy, CollectedDataset, CollectServices, DatasetKind } from "./datasets/collect.ts";
export type { ArsConfig, LinearPolicy, TransitionBuffers } from "./datasets/ars.ts";
export type { KdeOptions, KdeResult, OnProgress, Points, WeightStats } from "./numerics/kde.ts";
export type { Activation, Dense, MlpInit, MlpParams } from "./numerics/mlp.ts";
