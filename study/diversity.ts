/**
 * The diversity study: the SDW paper's analysis of state diversity against state quality as the
 * students' training loss varies, as one fp-ts composition of cached stages:
 *
 *     load → density → teacher? → for each targets, seed and subset kind: subset
 *          → for each level: subset-students → subset-evaluation
 *
 * Subsets of equal size differ in one property (`stages/subsets.ts`); each is learned by BC students
 * at a ladder of *levels* — a network (hidden layers × width) and a number of full-batch SGD steps —
 * chosen so the students' final training loss spans from large (few steps, narrow nets: the regime
 * of behaviour distillation) to small (long training of wide nets). Return is plotted against the
 * loss the students actually reached (`report/diversity.ts`). Student u of seed s starts from the
 * same weights and meets the same start states on every subset, so subsets are compared pairwise.
 * @module
 */

import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { fail, type PipelineError, pipelineError, toPipelineError } from "../core/errors.ts";
import { type Artifact, runStage, type Runtime } from "../core/runtime.ts";
import {
  DEFAULT_DENSITY_CONFIG,
  type DensityConfig,
  densityStage,
  type StateDensity,
} from "../stages/density.ts";
import { loadStage, locateDataset, type LocatedDataset, type OfflineDataset } from "../stages/load.ts";
import type { PolicyScores } from "../stages/scores.ts";
import {
  type StudentLevel,
  type SubsetEvaluationConfig,
  subsetEvaluationStage,
  type SubsetStudents,
  type SubsetStudentsConfig,
  subsetStudentsStage,
} from "../stages/subset_students.ts";
import {
  type Subset,
  SUBSET_KINDS,
  type SubsetConfig,
  type SubsetKind,
  subsetStage,
  TARGETS,
  type Targets,
} from "../stages/subsets.ts";
import {
  checkImportedTeacher,
  defaultTeacherConfig,
  locateTeacherSource,
  type TeacherConfig,
  teacherStage,
} from "../stages/teacher.ts";
import type { TeacherArtifact } from "../stages/teacher/model.ts";
import { applyOverrides } from "./config.ts";
import { resolveTeacherSource, teacherStageConfig, trainingConfig, validateSeeds } from "./obd.ts";

/** The whole configuration of a diversity study. */
export interface DiversityConfig {
  /** N, the states in every subset. */
  readonly size: number;
  /** Seeds: each draws its own subsets, students and episodes. */
  readonly seeds: readonly number[];
  /** The subsets compared (`random` is the reference). */
  readonly subsets: readonly SubsetKind[];
  /** Whose actions the students imitate: the data's, the teacher's, or both (two studies side by side). */
  readonly targets: readonly Targets[];
  /** `quality`: the share of transitions, from the best episodes down, the subset is drawn from. */
  readonly qualityFraction: number;
  /** `diverse`: α of the sampling probability ∝ p̂^(−α). */
  readonly alpha: number;
  /**
   * The ladder of training levels, as parallel lists (level i = entry i of each): full-batch SGD
   * steps and hidden width; all levels share the depth and learning rate below.
   */
  readonly levels: { readonly steps: readonly number[]; readonly width: readonly number[] };
  /** The students' depth and SGD learning rate (the papers' protocol: 3 hidden layers, 0.1). */
  readonly student: { readonly hiddenLayers: number; readonly learningRate: number };
  /** S, students per subset, level and seed. */
  readonly students: number;
  /** E, episodes per student. */
  readonly episodes: number;
  /** The load stage: the fewest transitions a dataset must have. */
  readonly load: { readonly minTransitions: number };
  /** The KDE behind the diverse subset and every subset's log-density. */
  readonly density: DensityConfig;
  /**
   * The teacher, for teacher targets: trained with these settings, or imported (`source`: `train`,
   * `auto`, a checkpoint or a saved teacher directory, as the pipeline's `teacher.source`). Both presets
   * take the pipeline's: the embedded dataset's shipped teacher (`auto`), or with `teacher.source=train`
   * the same training, sharing its cache entry.
   */
  readonly teacher: TeacherConfig & { readonly source: string };
}

const QUICK_TEACHER: DiversityConfig["teacher"] = { ...defaultTeacherConfig("td3bc"), source: "auto" };

/** Named configurations: `quick` (the embedded data in minutes) and `full` (more seeds, levels, students). */
export const DIVERSITY_PRESETS: Readonly<Record<string, DiversityConfig>> = {
  quick: {
    size: 256,
    seeds: [0],
    subsets: ["random", "quality", "diverse", "kcenter"],
    targets: ["data"],
    qualityFraction: 0.1,
    alpha: 1,
    levels: { steps: [2, 10, 50, 250, 1000, 1000], width: [256, 256, 256, 256, 256, 16] },
    student: { hiddenLayers: 3, learningRate: 0.1 },
    students: 4,
    episodes: 5,
    load: { minTransitions: 5_000 },
    density: DEFAULT_DENSITY_CONFIG,
    teacher: QUICK_TEACHER,
  },
  full: {
    size: 256,
    seeds: [0, 1, 2, 3, 4],
    subsets: ["random", "quality", "diverse", "kcenter"],
    targets: ["data", "teacher"],
    qualityFraction: 0.1,
    alpha: 1,
    levels: {
      steps: [1, 3, 10, 30, 100, 300, 1000, 3000, 3000, 3000],
      width: [256, 256, 256, 256, 256, 256, 256, 256, 64, 16],
    },
    student: { hiddenLayers: 3, learningRate: 0.1 },
    students: 10,
    episodes: 10,
    load: { minTransitions: 5_000 },
    density: DEFAULT_DENSITY_CONFIG,
    teacher: { ...defaultTeacherConfig("td3bc"), source: "auto" },
  },
};

/** A preset with `--set` overrides applied, or the config error naming the preset or the setting. */
export function diversityConfig(name: string, overrides: readonly string[]): DiversityConfig | PipelineError {
  const preset = DIVERSITY_PRESETS[name];
  if (!preset) {
    return pipelineError(
      "config",
      `unknown preset "${name}"`,
      `choose one of ${Object.keys(DIVERSITY_PRESETS).join(", ")}`,
    );
  }
  return applyOverrides<DiversityConfig>(preset, overrides);
}

/** The training levels of a config, one student config each. */
export function studyLevels(config: DiversityConfig): StudentLevel[] {
  return config.levels.steps.map((steps, i) => ({
    hiddenLayers: config.student.hiddenLayers,
    width: config.levels.width[i],
    steps,
    learningRate: config.student.learningRate,
  }));
}

/** The subset stage's config for a kind: only the parameters that kind uses enter its key. */
export function subsetConfig(
  config: DiversityConfig,
  kind: SubsetKind,
  targets: Targets,
  seed: number,
): SubsetConfig {
  return {
    kind,
    size: config.size,
    seed,
    targets,
    ...(kind === "quality" ? { qualityFraction: config.qualityFraction } : {}),
    ...(kind === "diverse" ? { alpha: config.alpha } : {}),
  };
}

/** Checks every setting before any work, naming the first bad one. */
export function validateDiversityConfig(config: DiversityConfig): void {
  const list = (name: string, values: readonly unknown[], allowed: readonly string[]) => {
    if (!Array.isArray(values) || values.length === 0) {
      fail("config", `${name} is empty`, `name some of ${allowed.join(", ")}`);
    }
    const bad = values.find((v) => !allowed.includes(v as string));
    if (bad !== undefined) {
      fail("config", `${name}: "${bad}" is unknown`, `choose from ${allowed.join(", ")}`);
    }
    if (new Set(values).size !== values.length) fail("config", `${name} lists an entry twice`);
  };
  list("subsets", config.subsets, SUBSET_KINDS);
  list("targets", config.targets, TARGETS);
  validateSeeds(config.seeds, "--seeds 0,1,2");
  const { steps, width } = config.levels;
  if (!Array.isArray(steps) || steps.length === 0) {
    fail("config", "levels.steps is empty", "e.g. --set levels.steps=10,100,1000");
  }
  if (!Array.isArray(width) || width.length !== steps.length) {
    fail(
      "config",
      `levels.width has ${width?.length ?? 0} entries, levels.steps ${steps.length}`,
      "give one width per level, e.g. --set levels.width=256,256,256",
    );
  }
  for (const kind of config.subsets) {
    for (const targets of config.targets) {
      subsetStage.validate?.(subsetConfig(config, kind, targets, config.seeds[0]));
    }
  }
  for (const level of studyLevels(config)) {
    subsetStudentsStage.validate?.({ level, students: config.students, seed: config.seeds[0] });
  }
  subsetEvaluationStage.validate?.({ episodes: config.episodes, seed: config.seeds[0] });
  densityStage.validate?.(config.density);
  if (config.targets.includes("teacher")) {
    if (typeof config.teacher.source !== "string" || config.teacher.source.trim() === "") {
      fail("config", "teacher.source is empty", "train, auto, a .pt checkpoint or a saved teacher directory");
    }
    teacherStage.validate?.(trainingConfig(config.teacher));
  }
  if (!Number.isInteger(config.load.minTransitions) || config.load.minTransitions < 1) {
    fail("config", `load.minTransitions = ${config.load.minTransitions} must be a positive integer`);
  }
}

/** One subset's students and evaluation at one level. */
export interface LevelRun {
  /** The level's index in `studyLevels(config)`. */
  readonly level: number;
  /** The students stage's output. */
  readonly students: Artifact<SubsetStudents>;
  /** The evaluation stage's output (absent when the study stopped after the students). */
  readonly evaluation?: Artifact<PolicyScores>;
}

/** One subset (of a targets and seed) with its runs at every level. */
export interface SubsetRun {
  /** Whose actions. */
  readonly targets: Targets;
  /** The seed. */
  readonly seed: number;
  /** The kind of subset. */
  readonly kind: SubsetKind;
  /** The subset stage's output. */
  readonly subset: Artifact<Subset>;
  /** Its students and evaluations, by level. */
  readonly levels: readonly LevelRun[];
}

/** Everything a diversity study produced. */
export interface DiversityResult {
  /** The dataset as named. */
  readonly datasetName: string;
  /** The file it resolved to. */
  readonly located: LocatedDataset;
  /** The config the study ran with. */
  readonly config: DiversityConfig;
  /** The load stage's output. */
  readonly dataset: Artifact<OfflineDataset>;
  /** The density stage's output. */
  readonly density: Artifact<StateDensity>;
  /** The teacher, for teacher targets. */
  readonly teacher?: Artifact<TeacherArtifact>;
  /** Every subset, in the order targets × seeds × subsets. */
  readonly runs: readonly SubsetRun[];
}

/** Where a study may stop: after the subsets, the students, or (default) the evaluations. */
export const DIVERSITY_UNTIL = ["subset", "students", "evaluation"] as const;

/**
 * Runs a diversity study of one dataset. Every step is a cached stage, so the same call again
 * computes nothing, and another seed or level computes only what is new.
 */
// deno-doc-ignore private-type-ref -- TaskEither is fp-ts's own type
export function runDiversityStudy(
  rt: Runtime,
  datasetName: string,
  config: DiversityConfig,
  until: (typeof DIVERSITY_UNTIL)[number] = "evaluation",
): TE.TaskEither<PipelineError, DiversityResult> {
  const checked = <T>(what: () => T) =>
    TE.tryCatch(() => Promise.resolve().then(what), (e): PipelineError => toPipelineError(e));
  const levels = studyLevels(config);
  return pipe(
    checked(() => validateDiversityConfig(config)),
    // An imported teacher is found (its checksums verified) before any work.
    TE.chain(() =>
      TE.tryCatch(
        async () => {
          if (!config.targets.includes("teacher")) return undefined;
          const path = await resolveTeacherSource(config.teacher.source, datasetName);
          return path === "train" ? undefined : await locateTeacherSource(path);
        },
        (e): PipelineError => ({ ...toPipelineError(e), stage: "teacher" }),
      )
    ),
    TE.bindTo("imported"),
    TE.bind("located", () =>
      TE.tryCatch(
        () => locateDataset(datasetName, rt.progress),
        (e): PipelineError => ({ ...toPipelineError(e), stage: "load" }),
      )),
    TE.bind("dataset", ({ located }) =>
      runStage(rt, loadStage, {
        file: located.file,
        sha256: located.sha256,
        env: located.env,
        minTransitions: config.load.minTransitions,
      }, {})),
    TE.chainFirst(({ dataset }) =>
      checked(() => {
        if (config.size > dataset.value.n) {
          fail(
            "config",
            `subsets of ${config.size} states from a dataset of ${dataset.value.n} transitions`,
            "choose a smaller --size",
          );
        }
      })
    ),
    TE.bind("density", ({ dataset }) => runStage(rt, densityStage, config.density, { dataset })),
    TE.bind("teacher", ({ dataset, imported }) =>
      config.targets.includes("teacher")
        ? pipe(
          runStage(rt, teacherStage, teacherStageConfig(config.teacher, imported), { dataset }),
          TE.chainFirst((teacher) =>
            TE.tryCatch(async () => {
              const d = dataset.value;
              if (imported) {
                checkImportedTeacher(teacher.value, imported.path, {
                  name: datasetName,
                  env: d.env,
                  obsDim: d.obsDim,
                  actDim: d.actDim,
                });
              }
              await Promise.resolve();
            }, (e): PipelineError => ({ ...toPipelineError(e), stage: "teacher" }))
          ),
          TE.map((a: Artifact<TeacherArtifact>) => a as Artifact<TeacherArtifact> | undefined),
        )
        : TE.right(undefined)),
    TE.bind("runs", ({ dataset, density, teacher }) =>
      TE.sequenceSeqArray(
        config.targets.flatMap((targets) =>
          config.seeds.flatMap((seed) =>
            config.subsets.map((kind) =>
              pipe(
                runStage(rt, subsetStage, subsetConfig(config, kind, targets, seed), {
                  dataset,
                  density,
                  ...(targets === "teacher" && teacher ? { teacher } : {}),
                }),
                TE.chain((subset) =>
                  pipe(
                    until === "subset" ? TE.right([]) : TE.sequenceSeqArray(
                      levels.map((level, i) => runLevel(rt, subset, i, level, config, seed, until)),
                    ),
                    TE.map((runs): SubsetRun => ({ targets, seed, kind, subset, levels: runs })),
                  )
                ),
              )
            )
          )
        ),
      )),
    TE.map(({ located, dataset, density, teacher, runs }) => ({
      datasetName,
      located,
      config,
      dataset,
      density,
      ...(teacher ? { teacher } : {}),
      runs,
    })),
  );
}

function runLevel(
  rt: Runtime,
  subset: Artifact<Subset>,
  index: number,
  level: StudentLevel,
  config: DiversityConfig,
  seed: number,
  until: (typeof DIVERSITY_UNTIL)[number],
): TE.TaskEither<PipelineError, LevelRun> {
  const studentsConfig: SubsetStudentsConfig = { level, students: config.students, seed };
  const evaluationConfig: SubsetEvaluationConfig = { episodes: config.episodes, seed };
  return pipe(
    runStage(rt, subsetStudentsStage, studentsConfig, { subset }),
    TE.chain((students) =>
      until === "students"
        ? TE.right({ level: index, students })
        : TE.map((evaluation: Artifact<PolicyScores>) => ({ level: index, students, evaluation }))(
          runStage(rt, subsetEvaluationStage, evaluationConfig, { subset, students }),
        )
    ),
  );
}
