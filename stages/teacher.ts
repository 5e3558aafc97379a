/**
 * The `teacher` stage: a near-optimal policy π* and its critic q* extracted from the offline data,
 * for PBC (actions of π*), Av-PBC and SDW (weights from q*).
 *
 * - `td3bc` (default, fast): TD3+BC, Fujimoto and Gu 2021 — see `teacher/td3bc.ts`.
 * - `calql` (the papers' teacher): Cal-QL, Nakamoto et al. 2023, CORL's defaults — `teacher/calql.ts`.
 * - Teachers trained elsewhere: a CORL / the authors' `.pt` checkpoint (`teacher/torch_checkpoint.ts`, `teacher/corl_import.ts`) or
 *   a saved teacher directory become the stage's output through a {@link TeacherImportConfig}, keyed
 *   by the file's sha256 (a directory's: its checksum manifest's), so a different file recomputes
 *   what is downstream and nothing upstream.
 *
 * The loop, top to bottom: upload the normalized data; make fresh networks from the seed, or load
 * the checkpoint in the stage's work directory; for each step t draw the minibatch and noise from
 * `new Rng(deriveSeed(seed, t))` and update; every `logEvery` steps write the losses to the run log; every
 * `checkpointEvery` steps save a checkpoint (an interrupted run resumes there and ends with the same
 * weights as an uninterrupted one); at the end evaluate π* in the environment (normalized return
 * over `evalEpisodes` episodes, recorded in the manifest) and return the {@link TeacherArtifact}.
 * @module
 */

import { ENV_SPECS, type EnvName } from "../envs/specs.ts";
import { evaluatePolicy } from "../envs/rollout.ts";
import { fail } from "../core/errors.ts";
import { sha256Hex } from "../core/hash.ts";
import { defineStage, type Stage, type StageContext } from "../core/stage.ts";
import { deriveSeed, Rng } from "../numerics/random.ts";
import type { OfflineDataset } from "./load.ts";
import {
  Calql,
  CALQL_DEFAULTS,
  type CalqlConfig,
  calqlNoise,
  type CalqlState,
  initCalqlWeights,
} from "./teacher/calql.ts";
import { disposeReplay, gatherBatch, replayTensors, returnsToGo, sampleIndices } from "./teacher/data.ts";
import { tidyPlain } from "../numerics/mlp.ts";
import {
  checkTeacherFitsDataset,
  CORL_GAUSSIAN_HEAD,
  loadTeacherDir,
  TEACHER_FORMAT,
  TEACHER_FORMAT_VERSION,
  type TeacherAlgorithm,
  type TeacherArtifact,
  type TeacherCurvePoint,
  type TeacherEvaluation,
  teacherFromArtifact,
  verifyTeacherDir,
} from "./teacher/model.ts";
import { readTorchCheckpoint } from "./teacher/torch_checkpoint.ts";
import { teacherFromCorl } from "./teacher/corl_import.ts";
import {
  initTd3bcWeights,
  targetNoise,
  Td3bc,
  TD3BC_DEFAULTS,
  type Td3bcConfig,
  type Td3bcState,
} from "./teacher/td3bc.ts";

export { CALQL_DEFAULTS, type CalqlConfig } from "./teacher/calql.ts";
export { TD3BC_DEFAULTS, type Td3bcConfig } from "./teacher/td3bc.ts";
export {
  type ActMode,
  checkTeacherFitsDataset,
  loadTeacherDir,
  readTeacherProvenance,
  saveTeacherDir,
  type Teacher,
  type TeacherAlgorithm,
  type TeacherArtifact,
  type TeacherCurvePoint,
  type TeacherEvaluation,
  teacherFromArtifact,
  type TeacherProvenance,
  verifyTeacherDir,
} from "./teacher/model.ts";
export { type BatchPolicy, evaluatePolicy, type Evaluation } from "../envs/rollout.ts";

/** Config of the teacher stage. Only the chosen algorithm's section is read (absent: its defaults). */
export interface TeacherConfig {
  /** The offline RL algorithm that trains the teacher. */
  readonly algorithm: TeacherAlgorithm;
  /** Gradient steps. */
  readonly steps: number;
  /** Episodes of the final evaluation (0: none). */
  readonly evalEpisodes: number;
  /** Seed of the initial weights, minibatches, noise and evaluation episodes. */
  readonly seed: number;
  /** Steps between loss records in the run log. */
  readonly logEvery: number;
  /** Steps between intermediate evaluations in the run log (0: none). */
  readonly evalEvery: number;
  /** Steps between checkpoints in the work directory. */
  readonly checkpointEvery: number;
  /** TD3+BC settings (used when `algorithm` is "td3bc"). */
  readonly td3bc?: Td3bcConfig;
  /** Cal-QL settings (used when `algorithm` is "calql"). */
  readonly calql?: CalqlConfig;
}

/**
 * Defaults for one algorithm. TD3+BC: 100k steps (40–60 min on one core with wasm), where its critic
 * has converged on the embedded dataset (mean Q from ≈ 40 at 8k steps to ≈ 150 by 50k) and the
 * policy is well above BC (README, "The teacher"); evaluated every 10k steps for the run log's
 * curve. Cal-QL: 200 steps, a CPU smoke run (≈ 0.6 steps/s on wasm); the papers' teacher needs a
 * GPU backend or an imported checkpoint.
 */
export function defaultTeacherConfig(algorithm: TeacherAlgorithm = "td3bc"): TeacherConfig {
  const common = { evalEpisodes: 10, seed: 0, checkpointEvery: 1000 };
  return algorithm === "td3bc"
    ? { algorithm, ...common, steps: 100_000, logEvery: 250, evalEvery: 10_000, td3bc: TD3BC_DEFAULTS }
    : {
      algorithm,
      ...common,
      steps: 200,
      logEvery: 10,
      evalEvery: 0,
      checkpointEvery: 50,
      calql: CALQL_DEFAULTS,
    };
}

/** What a checkpoint in the work directory holds. */
interface TeacherCheckpoint {
  readonly algorithm: TeacherAlgorithm;
  readonly obsDim: number;
  readonly actDim: number;
  readonly step: number;
  readonly seconds: number;
  readonly curve?: TeacherCurvePoint[];
  readonly state: Td3bcState | CalqlState;
}

/** Refuses teacher settings that cannot work, naming the setting; needs no data (runs before any stage). */
export function validateTeacherConfig(config: TeacherConfig): void {
  const whole = (name: string, v: number, min: number, max = Infinity) => {
    if (!Number.isInteger(v) || v < min || v > max) {
      fail(
        "config",
        `teacher.${name} = ${v} is not an integer from ${min}${max < Infinity ? ` to ${max}` : " up"}`,
      );
    }
  };
  const positive = (name: string, v: number) => {
    if (!(v > 0) || !Number.isFinite(v)) fail("config", `teacher.${name} = ${v} must be a positive number`);
  };
  const fraction = (name: string, v: number) => {
    if (!(v >= 0 && v <= 1)) fail("config", `teacher.${name} = ${v} must be in [0, 1]`);
  };
  if (config.algorithm !== "td3bc" && config.algorithm !== "calql") {
    fail("config", `teacher.algorithm "${config.algorithm}" is not td3bc or calql`);
  }
  whole("steps", config.steps, 1);
  whole("evalEpisodes", config.evalEpisodes, 0);
  whole("logEvery", config.logEvery, 1);
  whole("evalEvery", config.evalEvery, 0);
  whole("checkpointEvery", config.checkpointEvery, 1);
  const section = config.algorithm;
  const hyper = config.algorithm === "td3bc"
    ? (config.td3bc ?? TD3BC_DEFAULTS)
    : (config.calql ?? CALQL_DEFAULTS);
  whole(`${section}.batchSize`, hyper.batchSize, 1);
  const hidden = "hidden" in hyper
    ? hyper.hidden
    : [...(hyper as CalqlConfig).actorHidden, ...(hyper as CalqlConfig).criticHidden];
  if (!Array.isArray(hidden) || hidden.length === 0) {
    fail("config", `teacher.${section}: hidden layers must be a non-empty list of widths`);
  }
  hidden.forEach((w, i) => whole(`${section} hidden layer ${i} width`, w, 1, 4096));
  for (const [name, value] of Object.entries(hyper)) {
    if (/Lr$|^alpha$|^tau$|^discount$/.test(name) && typeof value === "number") {
      if (name === "tau" || name === "discount") fraction(`${section}.${name}`, value);
      else positive(`${section}.${name}`, value);
    }
  }
}

function checkConfig(config: TeacherConfig, data: OfflineDataset): void {
  validateTeacherConfig(config);
  const spec = ENV_SPECS[data.env];
  if (data.obsDim !== spec.obsDim || data.actDim !== spec.actDim) {
    fail(
      "input",
      `the dataset has ${data.obsDim}/${data.actDim} state/action dimensions, ${data.env} has ${spec.obsDim}/${spec.actDim}`,
    );
  }
}

/** A learner behind one interface, so the loop below reads the same for both algorithms. */
interface Learner {
  readonly step: number;
  update(t: number, stats: boolean): Record<string, number> | undefined;
  state(): Td3bcState | CalqlState;
  setState(s: Td3bcState | CalqlState): void;
  artifactNets(): Pick<TeacherArtifact, "actor" | "critic">;
  dispose(): void;
}

function makeLearner(config: TeacherConfig, data: OfflineDataset, maxAction: number): Learner {
  const { obsDim, actDim, n } = data;
  const initRng = new Rng(config.seed);
  if (config.algorithm === "td3bc") {
    const hyper = config.td3bc ?? TD3BC_DEFAULTS;
    const replay = replayTensors(data);
    const learner = new Td3bc(initTd3bcWeights(obsDim, actDim, hyper, initRng), hyper, maxAction);
    return {
      get step() {
        return learner.step;
      },
      update(t, stats) {
        const rng = new Rng(deriveSeed(config.seed, t));
        const idx = sampleIndices(rng, n, hyper.batchSize);
        const noise = targetNoise(rng, hyper.batchSize, actDim, hyper, maxAction);
        return tidyPlain(() => learner.update(gatherBatch(replay, idx), noise, stats)) as
          | Record<string, number>
          | undefined;
      },
      state: () => learner.state(),
      setState: (s) => learner.setState(s as Td3bcState),
      artifactNets() {
        const w = learner.weights();
        return { actor: { kind: "deterministic", net: w.actor }, critic: w.critic1 };
      },
      dispose() {
        learner.dispose();
        disposeReplay(replay);
      },
    };
  }
  const hyper = config.calql ?? CALQL_DEFAULTS;
  // Cal-QL's lower bounds: discounted returns-to-go of the data (CORL get_return_to_go).
  const replay = replayTensors(data, returnsToGo(data, hyper.discount));
  const learner = new Calql(initCalqlWeights(obsDim, actDim, hyper, initRng), hyper, maxAction);
  return {
    get step() {
      return learner.step;
    },
    update(t, stats) {
      const rng = new Rng(deriveSeed(config.seed, t));
      const idx = sampleIndices(rng, n, hyper.batchSize);
      const noise = calqlNoise(rng, hyper.batchSize, actDim, hyper.cqlNActions);
      return tidyPlain(() => learner.update(gatherBatch(replay, idx), noise, stats)) as
        | Record<string, number>
        | undefined;
    },
    state: () => learner.state(),
    setState: (s) => learner.setState(s as CalqlState),
    artifactNets() {
      const w = learner.weights();
      const head = {
        ...CORL_GAUSSIAN_HEAD,
        logStdMultiplier: w.logStdMultiplier,
        logStdOffset: w.logStdOffset,
      };
      return { actor: { kind: "tanh-gaussian", net: w.actor, head }, critic: w.critic1 };
    },
    dispose() {
      learner.dispose();
      disposeReplay(replay);
    },
  };
}

/**
 * Evaluates an artifact's deterministic policy: normalized return over `episodes` episodes (against
 * `reference`, a dataset's own reference returns, when given).
 */
export async function evaluateTeacher(
  artifact: TeacherArtifact,
  episodes: number,
  seed: number,
  reference?: { readonly min: number; readonly max: number },
): Promise<TeacherEvaluation> {
  if (!artifact.env) {
    fail(
      "input",
      "the teacher's environment is unknown, so it cannot be evaluated",
      "import it with --dataset or --env",
    );
  }
  const teacher = teacherFromArtifact(artifact);
  try {
    const e = await evaluatePolicy(artifact.env, teacher.policy("deterministic"), episodes, seed, reference);
    return {
      episodes,
      seed,
      meanNormalizedScore: e.meanNormalizedScore,
      normalizedScores: e.normalizedScores,
      returns: e.returns,
    };
  } finally {
    teacher.dispose();
  }
}

async function train(
  data: OfflineDataset,
  config: TeacherConfig,
  ctx: StageContext,
): Promise<TeacherArtifact> {
  checkConfig(config, data);
  const spec = ENV_SPECS[data.env];
  const maxAction = spec.actionHigh;
  const learner = makeLearner(config, data, maxAction);
  try {
    const curve: TeacherCurvePoint[] = [];
    const artifactAt = (
      steps: number,
      seconds: number,
      evaluation: TeacherEvaluation | null,
    ): TeacherArtifact => ({
      format: TEACHER_FORMAT,
      formatVersion: TEACHER_FORMAT_VERSION,
      algorithm: config.algorithm,
      source: "trained",
      env: data.env,
      obsDim: data.obsDim,
      actDim: data.actDim,
      maxAction,
      stateMean: data.stateMean,
      stateStd: data.stateStd,
      ...learner.artifactNets(),
      training: { steps, seconds, ...(curve.length ? { curve: [...curve] } : {}) },
      evaluation,
    });

    // Resume from the work directory's checkpoint, if this (stage, key) was interrupted.
    let secondsBefore = 0;
    const saved = await ctx.checkpoint.load() as TeacherCheckpoint | undefined;
    if (
      saved && saved.algorithm === config.algorithm && saved.obsDim === data.obsDim &&
      saved.actDim === data.actDim && saved.step <= config.steps
    ) {
      learner.setState(saved.state);
      secondsBefore = saved.seconds;
      curve.push(...(saved.curve ?? []));
      ctx.log({ event: "resume", step: saved.step });
    }

    const started = performance.now();
    const elapsed = () => secondsBefore + (performance.now() - started) / 1000;
    const progress = ctx.progress(`teacher ${config.algorithm}`, config.steps);
    let shown: Record<string, number> | undefined; // the latest losses, beside the progress bar
    for (let t = learner.step; t < config.steps; t++) {
      const done = t + 1;
      const stats = learner.update(t, done % config.logEvery === 0 || done === config.steps);
      if (stats) {
        const bad = Object.entries(stats).find(([, v]) => !Number.isFinite(v));
        if (bad) {
          fail(
            "numeric",
            `teacher ${config.algorithm} diverged at step ${done}: ${bad[0]} = ${bad[1]}`,
            "lower the learning rates or check the dataset's rewards",
          );
        }
        ctx.log({ event: "train", step: done, seconds: +elapsed().toFixed(2), ...stats });
      }
      if (stats) shown = Object.fromEntries(Object.entries(stats).slice(0, 3));
      progress.update(done, shown);
      if (config.evalEvery > 0 && done % config.evalEvery === 0 && done < config.steps) {
        const e = await evaluateTeacher(
          artifactAt(done, elapsed(), null),
          Math.max(1, config.evalEpisodes),
          config.seed,
          data.reference,
        );
        ctx.log({ event: "eval", step: done, normalizedScore: e.meanNormalizedScore });
        curve.push({ step: done, normalizedScore: e.meanNormalizedScore });
      }
      if (done % config.checkpointEvery === 0 && done < config.steps) {
        const checkpoint: TeacherCheckpoint = {
          algorithm: config.algorithm,
          obsDim: data.obsDim,
          actDim: data.actDim,
          step: done,
          seconds: elapsed(),
          curve: [...curve],
          state: learner.state(),
        };
        await ctx.checkpoint.save(checkpoint);
      }
    }
    progress.finish();
    const seconds = elapsed();

    const evaluation = config.evalEpisodes > 0
      ? await evaluateTeacher(
        artifactAt(config.steps, seconds, null),
        config.evalEpisodes,
        config.seed,
        data.reference,
      )
      : null;
    ctx.metric("steps", config.steps);
    ctx.metric("trainSeconds", +seconds.toFixed(2));
    if (evaluation) {
      if (curve.length) curve.push({ step: config.steps, normalizedScore: evaluation.meanNormalizedScore });
      ctx.metric("normalizedScore", +evaluation.meanNormalizedScore.toFixed(3));
      ctx.metric("evalEpisodes", evaluation.episodes);
      ctx.log({
        event: "eval",
        step: config.steps,
        normalizedScore: evaluation.meanNormalizedScore,
        returns: Array.from(evaluation.returns),
      });
    }
    const artifact = artifactAt(config.steps, seconds, evaluation);
    return artifact;
  } finally {
    learner.dispose();
  }
}

// ---------------------------------------------------------------------------------------------
// Teachers made elsewhere: a CORL / authors' checkpoint or a saved teacher directory
// ---------------------------------------------------------------------------------------------

/** The kinds of teacher file the stage imports. */
export type TeacherImportKind = "corl-checkpoint" | "teacher-dir";

/**
 * The teacher stage's config for a teacher made elsewhere. Its cache key is the content (`sha256`)
 * and the import settings, never the path, so a moved file reuses its entry and a changed file
 * recomputes the teacher and what follows it.
 */
export interface TeacherImportConfig {
  /** A CORL / the authors' `.pt` checkpoint (torch.save zip), or a saved teacher directory. */
  readonly import: TeacherImportKind;
  /** sha256 of the checkpoint file; for a directory, the sha256 of its checksum manifest. */
  readonly sha256: string;
  /**
   * Where the networks' input statistics come from: `dataset` (CORL checkpoints store none, so the
   * dataset's mean and std + 1e-3, as CORL trains with) or `saved` (the teacher directory's own).
   */
  readonly normalization: "dataset" | "saved";
  /** Episodes of the teacher's evaluation in the environment (0: none). */
  readonly evalEpisodes: number;
  /** Seed of the evaluation episodes. */
  readonly seed: number;
  /** Where the file is; left out of the cache key (a cadence-like setting: it does not change the output). */
  readonly path: string;
}

/** What the teacher stage takes: settings to train a teacher, or a teacher to import. */
export type TeacherStageConfig = TeacherConfig | TeacherImportConfig;

/** Whether a teacher stage config imports rather than trains. */
export function isTeacherImport(config: TeacherStageConfig): config is TeacherImportConfig {
  return typeof (config as TeacherImportConfig).import === "string";
}

/** A teacher file found on disk: its kind and content digest, the parts of an import's cache key. */
export interface TeacherSource {
  /** The path as given. */
  readonly path: string;
  /** Checkpoint file or saved teacher directory. */
  readonly kind: TeacherImportKind;
  /** sha256 of the file, or of the directory's checksum manifest (verified file by file). */
  readonly sha256: string;
}

/**
 * Finds a teacher file: a directory is a saved teacher (its manifest is checked file by file
 * now), anything else a CORL checkpoint (hashed). A missing path is an `input` error naming it.
 */
export async function locateTeacherSource(path: string): Promise<TeacherSource> {
  const info = await Deno.stat(path).catch(() =>
    fail(
      "input",
      `teacher source ${path} does not exist`,
      "give train, a CORL / authors' .pt checkpoint, or a directory from `deno task teacher train|import --out`",
    )
  );
  if (info.isDirectory) return { path, kind: "teacher-dir", sha256: await verifyTeacherDir(path) };
  const bytes = await Deno.readFile(path).catch((e) =>
    fail("input", `cannot read teacher checkpoint ${path} (${(e as Error).message.split("\n")[0]})`)
  );
  return { path, kind: "corl-checkpoint", sha256: await sha256Hex(bytes) };
}

/** The stage config importing `source` (the pipeline's `teacher` settings give the evaluation's size and seed). */
export function teacherImportConfig(
  source: TeacherSource,
  evaluation: { readonly evalEpisodes: number; readonly seed: number },
): TeacherImportConfig {
  return {
    import: source.kind,
    sha256: source.sha256,
    normalization: source.kind === "corl-checkpoint" ? "dataset" : "saved",
    evalEpisodes: evaluation.evalEpisodes,
    seed: evaluation.seed,
    path: source.path,
  };
}

/** The dataset facts an imported teacher is checked against. */
export interface TeacherTarget {
  /** The dataset's name, for messages. */
  readonly name: string;
  /** Its environment. */
  readonly env: EnvName;
  /** Its state dimension (the environment's when the dataset is not loaded yet). */
  readonly obsDim: number;
  /** Its action dimension. */
  readonly actDim: number;
}

/**
 * Refuses an imported teacher that does not fit the dataset, naming the file, the field and the
 * expected value: state/action dimensions, the environment it was made for, the action bound.
 */
export function checkImportedTeacher(teacher: TeacherArtifact, file: string, target: TeacherTarget): void {
  checkTeacherFitsDataset({ ...teacher, source: file }, target);
  if (teacher.env !== null && teacher.env !== target.env) {
    fail(
      "input",
      `teacher ${file}: env is ${teacher.env}, expected ${target.env} (dataset ${target.name})`,
      "use a teacher made for this dataset's environment",
    );
  }
  const bound = ENV_SPECS[target.env].actionHigh;
  if (teacher.maxAction !== bound) {
    fail(
      "input",
      `teacher ${file}: maxAction is ${teacher.maxAction}, expected ${bound} (the action bound of ${target.env})`,
      "use a teacher made for this environment",
    );
  }
}

/**
 * Reads an imported teacher. A checkpoint becomes a Cal-QL teacher of `target`'s environment (its
 * action bound), normalized with `target`'s statistics (the dataset's; without them, identity, for a
 * check before the dataset is loaded); a directory is loaded as saved. The content must still be
 * what `sha256` says.
 */
export async function readTeacherSource(
  source: TeacherSource,
  target?: {
    readonly env: EnvName;
    readonly stateMean?: Float32Array;
    readonly stateStd?: Float32Array;
  },
): Promise<TeacherArtifact> {
  const changed = () =>
    fail(
      "input",
      `teacher ${source.path} changed while the pipeline ran (sha256 is no longer ${source.sha256})`,
      "run again",
    );
  if (source.kind === "teacher-dir") {
    if (await verifyTeacherDir(source.path) !== source.sha256) changed();
    const saved = await loadTeacherDir(source.path);
    // A checkpoint imported without --dataset has no statistics (identity), yet its networks were
    // trained on normalized states: using it as saved would feed them raw states.
    const identity = saved.stateMean.every((m) => m === 0) && saved.stateStd.every((s) => s === 1);
    if (identity && saved.source.startsWith("imported:")) {
      fail(
        "input",
        `teacher ${source.path}: stateMean/stateStd are the identity (0 and 1), expected the training data's statistics: it was imported without --dataset`,
        "give the .pt checkpoint itself to --teacher (the dataset's statistics are used), or re-import it with --dataset",
      );
    }
    return saved;
  }
  const bytes = await Deno.readFile(source.path).catch((e) =>
    fail("input", `cannot read teacher checkpoint ${source.path} (${(e as Error).message.split("\n")[0]})`)
  );
  if (await sha256Hex(bytes) !== source.sha256) changed();
  const ckpt = await readTorchCheckpoint(bytes, source.path);
  return teacherFromCorl(ckpt, {
    file: source.path,
    env: target?.env ?? null,
    ...(target ? { maxAction: ENV_SPECS[target.env].actionHigh } : {}),
    ...(target?.stateMean && target.stateStd
      ? { stateMean: target.stateMean, stateStd: target.stateStd }
      : {}),
  });
}

function validateImportConfig(config: TeacherImportConfig): void {
  if (config.import !== "corl-checkpoint" && config.import !== "teacher-dir") {
    fail("config", `teacher import "${config.import}" is not corl-checkpoint or teacher-dir`);
  }
  if (!/^[0-9a-f]{64}$/.test(config.sha256)) {
    fail("config", `teacher import sha256 "${config.sha256}" is not hex`);
  }
  if (config.normalization !== "dataset" && config.normalization !== "saved") {
    fail("config", `teacher import normalization "${config.normalization}" is not dataset or saved`);
  }
  if (!Number.isInteger(config.evalEpisodes) || config.evalEpisodes < 0) {
    fail("config", `teacher.evalEpisodes = ${config.evalEpisodes} is not an integer from 0 up`);
  }
  if (!Number.isInteger(config.seed) || config.seed < 0) {
    fail("config", `teacher.seed = ${config.seed} is not an integer from 0 up`);
  }
}

async function importTeacher(
  data: OfflineDataset,
  config: TeacherImportConfig,
  ctx: StageContext,
): Promise<TeacherArtifact> {
  validateImportConfig(config);
  const source: TeacherSource = { path: config.path, kind: config.import, sha256: config.sha256 };
  const target = { name: data.file, env: data.env, obsDim: data.obsDim, actDim: data.actDim };
  const read = await readTeacherSource(
    source,
    config.normalization === "dataset" ? data : { env: data.env },
  );
  checkImportedTeacher(read, config.path, target);
  const digest = config.sha256.slice(0, 16);
  // The label says where the teacher came from and how its inputs are normalized (the report shows it).
  const label = config.import === "corl-checkpoint"
    ? `CORL checkpoint (sha256 ${digest}), states normalized with the dataset's statistics: the checkpoint stores none`
    : `saved teacher (sha256 ${digest}; ${
      read.source === "trained" ? `trained ${read.training.steps} steps` : read.source
    }), its own normalization`;
  const evaluation = config.evalEpisodes > 0
    ? await evaluateTeacher({ ...read, env: data.env }, config.evalEpisodes, config.seed)
    : null;
  ctx.log({ event: "import", file: config.path, sha256: config.sha256, normalization: config.normalization });
  if (evaluation) {
    ctx.metric("normalizedScore", +evaluation.meanNormalizedScore.toFixed(3));
    ctx.log({ event: "eval", normalizedScore: evaluation.meanNormalizedScore });
  }
  return { ...read, env: data.env, source: label, evaluation };
}

/** The teacher stage: `{ dataset }` → {@link TeacherArtifact}, trained or imported. */
export const teacherStage: Stage<{ dataset: OfflineDataset }, TeacherStageConfig, TeacherArtifact> =
  defineStage<{ dataset: OfflineDataset }, TeacherStageConfig, TeacherArtifact>({
    name: "teacher",
    version: "3",
    // Logging and checkpoint cadence do not change the weights (resumption is exact); an import's
    // path does not change what it reads (its sha256 is checked). evalEvery is in the key: the
    // evaluation curve is part of the output.
    cadence: ["logEvery", "checkpointEvery", "path"] as unknown as readonly never[],
    validate: (config) =>
      isTeacherImport(config) ? validateImportConfig(config) : validateTeacherConfig(config),
    compute: ({ dataset }, config, ctx) =>
      isTeacherImport(config) ? importTeacher(dataset, config, ctx) : train(dataset, config, ctx),
  });
