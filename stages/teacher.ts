/**
 * The `teacher` stage: a near-optimal policy π* and its critic q* extracted from the offline data,
 * for PBC (actions of π*), Av-PBC and SDW (weights from q*).
 *
 * - `td3bc` (default, fast): TD3+BC, Fujimoto and Gu 2021 — see `teacher/td3bc.ts`.
 * - `calql` (the papers' teacher): Cal-QL, Nakamoto et al. 2023, CORL's defaults — `teacher/calql.ts`.
 * - Teachers trained elsewhere come in through `deno task teacher import` (CORL checkpoints,
 *   `teacher/torch_checkpoint.ts`, `teacher/corl_import.ts`).
 *
 * The loop, top to bottom: upload the normalized data; make fresh networks from the seed, or load
 * the checkpoint in the stage's work directory; for each step t draw the minibatch and noise from
 * `new Rng(deriveSeed(seed, t))` and update; every `logEvery` steps write the losses to the run log; every
 * `checkpointEvery` steps save a checkpoint (an interrupted run resumes there and ends with the same
 * weights as an uninterrupted one); at the end evaluate π* in the environment (normalized return
 * over `evalEpisodes` episodes, recorded in the manifest) and return the {@link TeacherArtifact}.
 * @module
 */

import { ENV_SPECS } from "../envs/locomotion.ts";
import { evaluatePolicy } from "../envs/rollout.ts";
import { fail } from "../core/errors.ts";
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
  CORL_GAUSSIAN_HEAD,
  TEACHER_FORMAT,
  TEACHER_FORMAT_VERSION,
  type TeacherAlgorithm,
  type TeacherArtifact,
  type TeacherEvaluation,
  teacherFromArtifact,
} from "./teacher/model.ts";
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
  saveTeacherDir,
  type Teacher,
  type TeacherAlgorithm,
  type TeacherArtifact,
  type TeacherEvaluation,
  teacherFromArtifact,
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

/** Evaluates an artifact's deterministic policy: normalized return over `episodes` episodes. */
export async function evaluateTeacher(
  artifact: TeacherArtifact,
  episodes: number,
  seed: number,
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
    const e = await evaluatePolicy(artifact.env, teacher.policy("deterministic"), episodes, seed);
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
      training: { steps, seconds },
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
        );
        ctx.log({ event: "eval", step: done, normalizedScore: e.meanNormalizedScore });
      }
      if (done % config.checkpointEvery === 0 && done < config.steps) {
        const checkpoint: TeacherCheckpoint = {
          algorithm: config.algorithm,
          obsDim: data.obsDim,
          actDim: data.actDim,
          step: done,
          seconds: elapsed(),
          state: learner.state(),
        };
        await ctx.checkpoint.save(checkpoint);
      }
    }
    progress.finish();
    const seconds = elapsed();

    const evaluation = config.evalEpisodes > 0
      ? await evaluateTeacher(artifactAt(config.steps, seconds, null), config.evalEpisodes, config.seed)
      : null;
    ctx.metric("steps", config.steps);
    ctx.metric("trainSeconds", +seconds.toFixed(2));
    if (evaluation) {
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

/** The teacher stage: `{ dataset }` → {@link TeacherArtifact}. */
export const teacherStage: Stage<{ dataset: OfflineDataset }, TeacherConfig, TeacherArtifact> = defineStage<
  { dataset: OfflineDataset },
  TeacherConfig,
  TeacherArtifact
>({
  name: "teacher",
  version: "2",
  // Logging, evaluation and checkpoint cadence do not change the weights (resumption is exact).
  cadence: ["logEvery", "evalEvery", "checkpointEvery"],
  validate: validateTeacherConfig,
  compute: ({ dataset }, config, ctx) => train(dataset, config, ctx),
});
