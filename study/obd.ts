/**
 * A study of one dataset as one fp-ts composition:
 *
 *     load → teacher? → density? → baselines → for each method and seed: distill → evaluate
 *
 * Each arrow is `runStage`, so every stage is cached by its content hash and the first failure
 * short-circuits the rest. A stage runs only when a method needs it (DBC needs no teacher; only SDW
 * needs densities), so its output never enters a cache key it does not affect. Every stage's config
 * is checked before the first stage runs, and what needs the data right after loading it, so a bad
 * setting costs no training.
 *
 * The config has one section per concern; a study turns them into stage configs: the distill stage
 * gets the method's objective, the seed and the `student` section; the evaluate and baselines
 * stages get the parts of `evaluate` they use and the same `student`, so a set is always scored by
 * students trained the way it was distilled.
 * @module
 */

import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { fail, type PipelineError, pipelineError, toPipelineError } from "../core/errors.ts";
import { type Artifact, runStage, type Runtime } from "../core/runtime.ts";
import { type BaselinesConfig, type BaselinesReport, baselinesStage } from "../stages/baselines.ts";
import {
  DEFAULT_DENSITY_CONFIG,
  type DensityConfig,
  densityStage,
  type StateDensity,
} from "../stages/density.ts";
import {
  type DistillConfig,
  type DistilledSet,
  type DistillSettings,
  distillStage,
  type Objective,
  OBJECTIVES,
  PAPER_DISTILL,
  QUICK_DISTILL,
  requirements,
} from "../stages/distill.ts";
import {
  type EvaluateSettings,
  evaluateStage,
  type EvaluationReport,
  PAPER_EVALUATE,
  setEvaluationConfig,
} from "../stages/evaluate.ts";
import { loadStage, locateDataset, type LocatedDataset, type OfflineDataset } from "../stages/load.ts";
import { PAPER_STUDENT, type StudentConfig } from "../stages/student.ts";
import { ENV_SPECS } from "../envs/specs.ts";
import {
  checkImportedTeacher,
  defaultTeacherConfig,
  locateTeacherSource,
  readTeacherSource,
  type TeacherConfig,
  teacherImportConfig,
  type TeacherSource,
  teacherStage,
  type TeacherStageConfig,
} from "../stages/teacher.ts";
import type { TeacherArtifact } from "../stages/teacher/model.ts";
import { applyOverrides } from "./config.ts";

/** The whole configuration of a study, one section per concern. */
export interface PipelineConfig {
  /** Distillation seeds: every method runs once per seed (teacher, densities and baselines are shared). */
  readonly seeds: readonly number[];
  /** The load stage: the fewest usable transitions a dataset must have. */
  readonly load: { readonly minTransitions: number };
  /** Offline RL for π* and q*, or the teacher to import instead (`source`). */
  readonly teacher: TeacherSettings;
  /** The state density behind SDW's weights. */
  readonly density: DensityConfig;
  /** The student: the inner loop of distillation and every evaluated student. */
  readonly student: StudentConfig;
  /** The bi-level distillation (its objective comes from the method, its seed from `seeds`). */
  readonly distill: DistillSettings;
  /** How sets and the baselines are scored. */
  readonly evaluate: EvaluateSettings;
}

/**
 * The `teacher` section: the training settings and where the teacher comes from. `source` is
 * `train` (train with these settings), `auto` (the dataset's shipped teacher when it has one — the
 * embedded dataset's is {@link SHIPPED_TEACHER_DIR} — else train), a CORL / the authors' `.pt`
 * checkpoint, or a saved teacher directory. An imported teacher is evaluated with `evalEpisodes`
 * episodes of seed `seed`; the training settings do not apply to it.
 */
export type TeacherSettings = TeacherConfig & { readonly source: string };

/** The embedded dataset's shipped teacher: a saved teacher directory, used by `--teacher auto` when present. */
export const SHIPPED_TEACHER_DIR = "data/embedded/teacher";

/** Named configurations: `quick` for a laptop demo, `paper` for the published settings. */
export const PRESETS: Readonly<Record<string, PipelineConfig>> = {
  quick: {
    // Three seeds so that Table 1 has intervals over seeds × students × episodes (see the README's demo).
    seeds: [0, 1, 2],
    load: { minTransitions: 5_000 },
    // The shipped teacher when there is one; `--teacher train` retrains it with exactly these settings
    // (those of `deno task teacher train`, so both share one cache entry).
    teacher: { ...defaultTeacherConfig("td3bc"), source: "auto" },
    density: DEFAULT_DENSITY_CONFIG,
    // The paper's student (T = 100): 20-step students barely fit a set (see the README's diagnosis).
    student: PAPER_STUDENT,
    distill: QUICK_DISTILL,
    evaluate: {
      ...PAPER_EVALUATE,
      // The paper preset's variant tables (architectures, optimizers, ensembles) are left to it.
      run: { ...PAPER_EVALUATE.run, ensemble: false, architectures: false, optimizers: false },
      students: 8,
      episodes: 5,
      randomRepeats: 3,
      bcSteps: 1000,
      bcLr: 1e-3,
      bcPolicies: 3,
    },
  },
  paper: {
    seeds: [0],
    load: { minTransitions: 5_000 },
    teacher: { ...defaultTeacherConfig("td3bc"), steps: 1_000_000, source: "train" },
    density: DEFAULT_DENSITY_CONFIG,
    student: PAPER_STUDENT,
    distill: PAPER_DISTILL,
    evaluate: PAPER_EVALUATE,
  },
};

/** Settings a study sets itself, and the option that sets them: naming one in `--set` is an error. */
const STUDY_SETTINGS: Readonly<Record<string, string>> = {
  "distill.objective": "the objective is the method: choose it with --method (e.g. --method avpbc)",
  "distill.seed": "the distillation seeds are the study's: use --seed N or --set seeds=0,1,2",
};

/** A preset with `--set` overrides applied, or the config error naming the preset or the setting. */
export function presetConfig(name: string, overrides: readonly string[]): PipelineConfig | PipelineError {
  const preset = PRESETS[name];
  if (!preset) {
    return pipelineError(
      "config",
      `unknown preset "${name}"`,
      `choose one of ${Object.keys(PRESETS).join(", ")}`,
    );
  }
  for (const assignment of overrides) {
    const path = assignment.split("=")[0].trim();
    if (path in STUDY_SETTINGS) {
      return pipelineError("config", `--set ${path}: a study sets this itself`, STUDY_SETTINGS[path]);
    }
  }
  return applyOverrides<PipelineConfig>(preset, overrides);
}

/** Cached stages in the order they run (valid values of `--force`). */
export const STAGE_NAMES = ["load", "teacher", "density", "distill", "baselines", "evaluate"] as const;
/** One of {@link STAGE_NAMES}. */
export type StageName = (typeof STAGE_NAMES)[number];

/** Where a run may stop (`--until`): after a cached stage, or after the summary (the default). */
export const UNTIL_STAGES = ["load", "teacher", "density", "distill", "evaluate", "summarize"] as const;
/** One of {@link UNTIL_STAGES}. */
export type UntilStage = (typeof UNTIL_STAGES)[number];

/** What a study compares: Random selection (a baseline, no distillation) and the objectives. */
export const METHODS = ["random", ...OBJECTIVES] as const;
/** One of {@link METHODS}. */
export type Method = (typeof METHODS)[number];

/** The methods of the offline demo and of a study when none is named: the paper's Table 1 rows with SDW. */
export const DEFAULT_METHODS: readonly Method[] = ["random", "dbc", "pbc", "avpbc", "sdw"];

/** The config with one distillation seed (as `--seed N`). */
export function withSeed(config: PipelineConfig, seed: number): PipelineConfig {
  return { ...config, seeds: [seed] };
}

/** The distill stage's config for a method and seed. */
export function distillConfig(config: PipelineConfig, objective: Objective, seed: number): DistillConfig {
  return { ...config.distill, objective, seed, student: config.student };
}

/** The baselines stage's config. */
export function baselinesConfig(config: PipelineConfig): BaselinesConfig {
  const e = config.evaluate;
  return {
    randomSelection: e.run.randomSelection,
    bc: e.run.bc,
    students: e.students,
    episodes: e.episodes,
    synsetSize: config.distill.synsetSize,
    randomRepeats: e.randomRepeats,
    bcSteps: e.bcSteps,
    bcBatchSize: e.bcBatchSize,
    bcLr: e.bcLr,
    bcPolicies: e.bcPolicies,
    student: config.student,
  };
}

/** What a study runs: the methods, and the last stage to run. */
export interface StudyOptions {
  /** The methods to compare, in the order of the table. */
  readonly methods: readonly Method[];
  /** Stop after this stage (default: everything). */
  readonly until?: UntilStage;
}

/** One method's outputs for one seed (absent when `until` stopped before them, or for Random selection). */
export interface MethodRun {
  /** The method. */
  readonly method: Method;
  /** The distillation seed. */
  readonly seed: number;
  /** The distill stage's output. */
  readonly distilled?: Artifact<DistilledSet>;
  /** The evaluate stage's scores of that set. */
  readonly evaluation?: Artifact<EvaluationReport>;
}

/** Everything a study of one dataset produced. */
export interface StudyResult {
  /** The dataset as named on the command line (its column label in the tables). */
  readonly datasetName: string;
  /** The file the name resolved to, with its checksum. */
  readonly located: LocatedDataset;
  /** The load stage's output. */
  readonly dataset: Artifact<OfflineDataset>;
  /** The teacher, when a method needed one. */
  readonly teacher?: Artifact<TeacherArtifact>;
  /** The file the teacher was imported from, when it was not trained. */
  readonly teacherFile?: string;
  /** The state densities, when an SDW method needed them. */
  readonly density?: Artifact<StateDensity>;
  /** Random selection and BC on the whole data, scored once for all methods and seeds. */
  readonly baselines?: Artifact<BaselinesReport>;
  /** Each method's outputs for each seed, methods in the order of `options.methods`. */
  readonly runs: readonly MethodRun[];
}

const reaches = (until: UntilStage | undefined, stage: UntilStage) =>
  UNTIL_STAGES.indexOf(until ?? "summarize") >= UNTIL_STAGES.indexOf(stage);

/** Turns a stage's `Artifact<T>` into an optional one, for stages a study may skip. */
const optional = <T>(te: TE.TaskEither<PipelineError, Artifact<T>>) =>
  TE.map((a: Artifact<T>) => a as Artifact<T> | undefined)(te);
const skipped = TE.right(undefined);

/** Refuses a seed list that is empty, holds anything but non-negative integers, or repeats a seed. */
export function validateSeeds(seeds: readonly number[], example: string): void {
  if (!Array.isArray(seeds) || seeds.length === 0 || seeds.some((s) => !Number.isInteger(s) || s < 0)) {
    fail(
      "config",
      `seeds = ${JSON.stringify(seeds)} must be a non-empty list of non-negative integers`,
      `e.g. ${example}`,
    );
  }
  if (new Set(seeds).size !== seeds.length) fail("config", `seeds = ${seeds.join(",")} lists a seed twice`);
}

/**
 * Runs every stage's own check on the configs this study will give it, before any work: a bad
 * setting anywhere is reported in one line before the first stage computes.
 */
export function validateStudy(config: PipelineConfig, methods: readonly Method[]): void {
  validateSeeds(config.seeds, "--set seeds=0,1,2");
  if (!Number.isInteger(config.load.minTransitions) || config.load.minTransitions < 1) {
    fail("config", `load.minTransitions = ${config.load.minTransitions} must be a positive integer`);
  }
  const objectives = methods.filter((m): m is Objective => m !== "random");
  if (needsTeacher(objectives, config)) {
    if (typeof config.teacher.source !== "string" || config.teacher.source.trim() === "") {
      fail(
        "config",
        `teacher.source = ${JSON.stringify(config.teacher.source)} is empty`,
        TEACHER_SOURCE_HINT,
      );
    }
    teacherStage.validate?.(trainingConfig(config.teacher));
  }
  if (objectives.some((o) => requirements(o).density)) densityStage.validate?.(config.density);
  for (const objective of objectives) {
    distillStage.validate?.(distillConfig(config, objective, config.seeds[0]));
  }
  evaluateStage.validate?.(setEvaluationConfig(config.evaluate, config.student));
  baselinesStage.validate?.(baselinesConfig(config));
  const lastK = config.evaluate.lastEvaluations;
  if (!Number.isInteger(lastK) || lastK < 1) {
    fail("config", `evaluate.lastEvaluations = ${lastK} must be a positive integer`);
  }
}

const TEACHER_SOURCE_HINT =
  "give --teacher train, auto, a CORL / authors' .pt checkpoint, or a saved teacher directory";

/** The teacher stage's config for training: the section without `source`. */
export function trainingConfig(settings: TeacherSettings): TeacherConfig {
  const { source: _source, ...train } = settings;
  return train;
}

/**
 * Where a study's teacher comes from: `train`, or the path of a file to import. `auto` is the
 * shipped teacher of the embedded dataset when {@link SHIPPED_TEACHER_DIR} exists, else `train`.
 */
export async function resolveTeacherSource(source: string, datasetName: string): Promise<"train" | string> {
  if (source === "train") return "train";
  if (source === "auto") {
    const shipped = datasetName === "embedded" &&
      await Deno.stat(SHIPPED_TEACHER_DIR).then((s) => s.isDirectory, () => false);
    return shipped ? SHIPPED_TEACHER_DIR : "train";
  }
  return source;
}

function needsTeacher(objectives: readonly Objective[], config: PipelineConfig): boolean {
  return objectives.some((o) => requirements(o).teacher || config.distill.init === "top-q");
}

/** What needs the data: refused right after loading, before the teacher trains. */
function validateAgainstData(config: PipelineConfig, dataset: OfflineDataset): void {
  if (config.distill.synsetSize > dataset.n) {
    fail(
      "config",
      `distill.synsetSize = ${config.distill.synsetSize} is larger than the dataset (${dataset.n} transitions in ${dataset.file})`,
      "choose a smaller synthetic set",
    );
  }
}

/**
 * A study of one dataset: load; the teacher and densities once, if a method needs them; the
 * baselines once; then distill and evaluate per method and seed. Every step is a cached stage, so
 * a second run, another method or another seed reuses everything upstream of it.
 */
// deno-doc-ignore private-type-ref -- TaskEither is fp-ts's own type
export function runStudy(
  rt: Runtime,
  datasetName: string,
  options: StudyOptions,
  config: PipelineConfig,
): TE.TaskEither<PipelineError, StudyResult> {
  const { methods, until } = options;
  const objectives = methods.filter((m): m is Objective => m !== "random");
  const teacherWanted = needsTeacher(objectives, config);
  const densityWanted = objectives.some((o) => requirements(o).density);
  const run = config.evaluate.run;
  const checked = <T>(what: () => T) =>
    TE.tryCatch(() => Promise.resolve().then(what), (e): PipelineError => toPipelineError(e));
  const wantsTeacherStage = teacherWanted && reaches(until, "teacher");
  return pipe(
    checked(() => validateStudy(config, methods)),
    TE.chain(() =>
      TE.tryCatch(
        () =>
          wantsTeacherStage ? findTeacher(config.teacher.source, datasetName) : Promise.resolve(undefined),
        (e): PipelineError => ({ ...toPipelineError(e), stage: "teacher" }),
      )
    ),
    TE.bindTo("imported"),
    TE.bind("located", () =>
      TE.tryCatch(
        () => locateDataset(datasetName, rt.progress),
        (e): PipelineError => ({ ...toPipelineError(e), stage: "load" }),
      )),
    // Known environment: a teacher that cannot fit is refused before the dataset is read.
    TE.chainFirst(({ imported, located }) =>
      checked(() => {
        if (imported && located.env) {
          const spec = ENV_SPECS[located.env];
          checkImportedTeacher(imported.bare, imported.source.path, {
            name: datasetName,
            env: located.env,
            obsDim: spec.obsDim,
            actDim: spec.actDim,
          });
        }
      })
    ),
    TE.bind(
      "dataset",
      ({ located }) =>
        runStage(rt, loadStage, {
          file: located.file,
          sha256: located.sha256,
          env: located.env,
          ...(located.minari ? { minari: located.minari } : {}),
          minTransitions: config.load.minTransitions,
        }, {}),
    ),
    TE.chainFirst(({ dataset, imported }) =>
      checked(() => {
        validateAgainstData(config, dataset.value);
        const d = dataset.value;
        if (imported) {
          checkImportedTeacher(imported.bare, imported.source.path, {
            name: datasetName,
            env: d.env,
            obsDim: d.obsDim,
            actDim: d.actDim,
          });
        }
      })
    ),
    TE.bind(
      "teacher",
      ({ dataset, imported }) =>
        wantsTeacherStage
          ? optional(
            runStage(rt, teacherStage, teacherStageConfig(config.teacher, imported?.source), { dataset }),
          )
          : skipped,
    ),
    TE.bind(
      "density",
      ({ dataset }) =>
        densityWanted && reaches(until, "density")
          ? optional(runStage(rt, densityStage, config.density, { dataset }))
          : skipped,
    ),
    TE.bind(
      "baselines",
      ({ dataset }) =>
        reaches(until, "evaluate") && (run.randomSelection || run.bc)
          ? optional(runStage(rt, baselinesStage, baselinesConfig(config), { dataset }))
          : skipped,
    ),
    TE.bind("runs", ({ dataset, teacher, density }) =>
      TE.sequenceSeqArray(
        methods.flatMap((method) =>
          config.seeds.map((seed) =>
            runMethod(rt, method, seed, config, until, { dataset, teacher, density })
          )
        ),
      )),
    TE.map(({ imported, ...r }) => ({
      datasetName,
      ...r,
      ...(imported && r.teacher ? { teacherFile: imported.source.path } : {}),
    })),
  );
}

/** The teacher stage's config: training settings, or the import of `source`. */
export function teacherStageConfig(settings: TeacherSettings, source?: TeacherSource): TeacherStageConfig {
  return source ? teacherImportConfig(source, settings) : trainingConfig(settings);
}

/**
 * The teacher to import, found and read before any work (a directory's checksums verified, a
 * checkpoint parsed, without the dataset's statistics yet), or undefined when the study trains one.
 */
async function findTeacher(
  setting: string,
  datasetName: string,
): Promise<{ source: TeacherSource; bare: TeacherArtifact } | undefined> {
  const path = await resolveTeacherSource(setting, datasetName);
  if (path === "train") return undefined;
  const source = await locateTeacherSource(path);
  return { source, bare: await readTeacherSource(source) };
}

/** Distill and evaluate one method for one seed (Random selection has nothing of its own: its score is a baseline). */
function runMethod(
  rt: Runtime,
  method: Method,
  seed: number,
  config: PipelineConfig,
  until: UntilStage | undefined,
  upstream: {
    dataset: Artifact<OfflineDataset>;
    teacher?: Artifact<TeacherArtifact>;
    density?: Artifact<StateDensity>;
  },
): TE.TaskEither<PipelineError, MethodRun> {
  if (method === "random" || !reaches(until, "distill")) return TE.right({ method, seed });
  const { dataset, teacher, density } = upstream;
  const needs = requirements(method);
  const stageConfig = distillConfig(config, method, seed);
  return pipe(
    runStage(rt, distillStage, stageConfig, {
      dataset,
      ...(teacher && (needs.teacher || stageConfig.init === "top-q") ? { teacher } : {}),
      ...(density && needs.density ? { density } : {}),
    }),
    TE.bindTo("distilled"),
    TE.bind(
      "evaluation",
      ({ distilled }) =>
        reaches(until, "evaluate")
          ? optional(
            runStage(rt, evaluateStage, setEvaluationConfig(config.evaluate, config.student), {
              dataset,
              distilled,
            }),
          )
          : skipped,
    ),
    TE.map(({ distilled, evaluation }) => ({
      method,
      seed,
      distilled,
      ...(evaluation ? { evaluation } : {}),
    })),
  );
}
