/**
 * Local collection of D4RL-style datasets, for machines that cannot download D4RL.
 *
 * Behaviour policies are trained in our own MuJoCo environments with ARS (`ars.ts`):
 * - medium-replay: the exploration of the learner, up to the iteration at which the policy first
 *   reaches the medium score (default: a normalized score of 100/3, a third of D4RL's expert
 *   reference). Each ARS iteration records `replayEpisodes` episodes of the current policy with
 *   Gaussian exploration noise, as an off-policy learner's replay buffer holds its stochastic
 *   behaviour (D4RL's: SAC's). ARS's own perturbation rollouts are not recorded: they are
 *   deterministic and within ν of each other, so their actions cover almost nothing around the
 *   policy (action std 0.08 on two of Hopper's joints), and offline RL on such data has no
 *   evidence about the actions it improves towards;
 * - medium: rollouts of that policy; expert: rollouts of the final policy; medium-expert: half each;
 * - random: rollouts of randomly initialized linear policies.
 * Rollouts of medium and expert policies add Gaussian action noise (σ = 0.1 by default), as D4RL's
 * stochastic SAC policies did. These datasets are D4RL-style (same layout and semantics), not D4RL.
 *
 * Usage: deno task collect <env> <kind> --out data/<file>.hdf5 [--transitions N] [--seed S]
 * @module
 */

import { ENV_SPECS, envBody, type EnvName, normalizedScore } from "../envs/specs.ts";
import { fail } from "../core/errors.ts";
import { loadCheckpoint, removeCheckpoint, saveCheckpoint } from "../core/checkpoint.ts";
import type { ProgressFactory } from "../core/progress.ts";
import {
  ARS_DEFAULTS,
  type ArsConfig,
  arsUpdate,
  concatTransitions,
  emptyTransitions,
  type LinearPolicy,
  RunningStats,
  sampleDirections,
  sliceTransitions,
  type TransitionBuffers,
} from "./ars.ts";
import { RolloutPool } from "./rollout_pool.ts";
import { deriveSeed, Rng } from "../numerics/random.ts";

/** Dataset kinds, as in D4RL. */
export const DATASET_KINDS = ["random", "medium", "medium-replay", "expert", "medium-expert"] as const;
/** One of `DATASET_KINDS`. */
export type DatasetKind = (typeof DATASET_KINDS)[number];

/** Everything that determines a collected dataset. */
export interface CollectConfig {
  /** Environment to collect in. */
  readonly env: EnvName;
  /** Which D4RL-style dataset to produce. */
  readonly kind: DatasetKind;
  /**
   * Transitions to produce. For medium-replay it is a cap: when training collected more, a seeded
   * random subset of whole episodes is kept (in their original order), so the mix of early and late
   * behaviour that defines medium-replay survives the cut.
   */
  readonly transitions: number;
  /** Seed of training, rollouts and subsampling. */
  readonly seed: number;
  /** Normalized score at which the training policy counts as "medium". */
  readonly mediumScore: number;
  /** Normalized score at which training stops when an expert is needed. */
  readonly expertScore: number;
  /** Training stops here even if the target score was not reached. */
  readonly maxIterations: number;
  /** Evaluate the unperturbed policy every this many iterations … */
  readonly evalEvery: number;
  /** … over this many episodes. */
  readonly evalEpisodes: number;
  /** Gaussian action noise of the medium and expert policies' rollouts. */
  readonly actionNoise: number;
  /** medium-replay: exploration episodes of the current policy recorded per ARS iteration. */
  readonly replayEpisodes: number;
  /** medium-replay: σ of the Gaussian action noise of those episodes (actions then clipped to ±1). */
  readonly explorationNoise: number;
  /** Hyperparameters of the ARS behaviour-policy trainer. */
  readonly ars: ArsConfig;
}

/** Defaults for an environment and kind. */
export function defaultCollectConfig(env: EnvName, kind: DatasetKind): CollectConfig {
  return {
    env,
    kind,
    transitions: 1_000_000,
    seed: 0,
    mediumScore: 100 / 3,
    expertScore: 90,
    maxIterations: 3000,
    evalEvery: 1,
    evalEpisodes: 4,
    actionNoise: 0.1,
    replayEpisodes: 8,
    explorationNoise: 0.3,
    ars: ARS_DEFAULTS[envBody(env)],
  };
}

/** A trained behaviour policy and how good it was when it was taken. */
export interface BehaviourPolicy {
  /** The linear policy, with its observation normalization. */
  readonly policy: LinearPolicy;
  /** ARS iteration at which it was taken. */
  readonly iteration: number;
  /** Mean undiscounted return and normalized score at that evaluation. */
  readonly evalReturn: number;
  /** Normalized score (0 = random, 100 = D4RL expert) at that evaluation. */
  readonly evalScore: number;
}

/** A collected dataset in D4RL's layout, with its provenance. */
export interface CollectedDataset {
  /** The configuration it was collected under. */
  readonly config: CollectConfig;
  /** The transitions, in D4RL's layout. */
  readonly transitions: TransitionBuffers;
  /** The medium policy, when the kind needed one. */
  readonly medium?: BehaviourPolicy;
  /** The expert policy, when the kind needed one. */
  readonly expert?: BehaviourPolicy;
  /** ARS iterations run (0 for "random"). */
  readonly trainingIterations: number;
  /** Environment steps taken while training (0 for "random"). */
  readonly trainingSteps: number;
  /** Wall-clock duration of the collection, in seconds. */
  readonly seconds: number;
}

interface TrainingState {
  iteration: number;
  weights: Float64Array;
  statsCount: number;
  statsMean: Float64Array;
  statsM2: Float64Array;
  steps: number;
  replay: TransitionBuffers;
  medium?: BehaviourPolicy;
  lastEval?: { iteration: number; evalReturn: number; evalScore: number };
  fingerprint: string;
}

function snapshot(weights: Float64Array, stats: RunningStats): LinearPolicy {
  return { weights: weights.slice(), mean: stats.mean.slice(), std: stats.std() };
}

/**
 * At most `count` transitions made of whole episodes chosen at random (seeded), kept in their
 * original order. Episodes end at a terminal or a timeout.
 */
export function subsampleEpisodes(
  t: TransitionBuffers,
  count: number,
  seed: number,
  obsDim: number,
  actDim: number,
): TransitionBuffers {
  if (t.size <= count) return t;
  const episodes: [number, number][] = [];
  let start = 0;
  for (let i = 0; i < t.size; i++) {
    if (t.terminals[i] || t.timeouts[i] || i === t.size - 1) {
      episodes.push([start, i + 1]);
      start = i + 1;
    }
  }
  const order = new Rng(seed ^ 0x2545f491).sampleWithoutReplacement(episodes.length, episodes.length);
  const chosen: number[] = [];
  let total = 0;
  for (const e of order) {
    const length = episodes[e][1] - episodes[e][0];
    if (total + length > count) continue;
    chosen.push(e);
    total += length;
  }
  chosen.sort((a, b) => a - b);
  const episodesKept = chosen.map((e) => sliceTransitions(t, episodes[e][0], episodes[e][1], obsDim, actDim));
  return concatTransitions(episodesKept, obsDim, actDim);
}

/** Services a collection run needs from its caller. */
export interface CollectServices {
  /** Creates the progress bar of the training loop. */
  readonly progress: ProgressFactory;
  /** Receives one structured record per training event (evaluation, resume, …). */
  readonly log: (record: Readonly<Record<string, unknown>>) => void;
  /** Directory for resumable training checkpoints (omit to disable). */
  readonly checkpointDir?: string;
  /** Rollout worker threads (default: `navigator.hardwareConcurrency`). */
  readonly workers?: number;
}

/** Trains the behaviour policies and assembles the dataset of `config.kind`. */
export async function collect(config: CollectConfig, services: CollectServices): Promise<CollectedDataset> {
  const started = performance.now();
  const { obsDim, actDim } = ENV_SPECS[config.env];
  const pool = new RolloutPool(config.env, services.workers);
  try {
    if (config.kind === "random") {
      const rng = new Rng(config.seed);
      const transitions = await rolloutUntil(
        pool,
        config,
        () => ({
          weights: rng.fillNormal(new Float64Array(actDim * obsDim), 1 / Math.sqrt(obsDim)),
          mean: new Float64Array(obsDim),
          std: new Float64Array(obsDim).fill(1),
        }),
        config.transitions,
        0,
        config.seed,
        services.progress,
      );
      return {
        config,
        transitions,
        trainingIterations: 0,
        trainingSteps: 0,
        seconds: (performance.now() - started) / 1000,
      };
    }
    const needExpert = config.kind === "expert" || config.kind === "medium-expert";
    const trained = await train(pool, config, needExpert, services);
    const medium = trained.medium;
    if (!medium) {
      fail(
        "numeric",
        `ARS did not reach the medium score ${
          config.mediumScore.toFixed(1)
        } within ${config.maxIterations} iterations (last score ${trained.lastEval?.evalScore.toFixed(1)})`,
        "raise --max-iterations or try another --seed",
      );
    }
    const finalStats = new RunningStats(obsDim);
    finalStats.merge(trained.statsCount, trained.statsMean, trained.statsM2);
    const expert: BehaviourPolicy | undefined = needExpert
      ? {
        policy: snapshot(trained.weights, finalStats),
        iteration: trained.iteration,
        evalReturn: trained.lastEval?.evalReturn ?? NaN,
        evalScore: trained.lastEval?.evalScore ?? NaN,
      }
      : undefined;
    let transitions: TransitionBuffers;
    const fixed = (p: BehaviourPolicy) => () => p.policy;
    switch (config.kind) {
      case "medium-replay":
        transitions = subsampleEpisodes(trained.replay, config.transitions, config.seed, obsDim, actDim);
        break;
      case "medium":
        transitions = await rolloutUntil(
          pool,
          config,
          fixed(medium),
          config.transitions,
          config.actionNoise,
          config.seed + 101,
          services.progress,
        );
        break;
      case "expert":
        transitions = await rolloutUntil(
          pool,
          config,
          fixed(expert!),
          config.transitions,
          config.actionNoise,
          config.seed + 202,
          services.progress,
        );
        break;
      case "medium-expert": {
        const half = Math.floor(config.transitions / 2);
        const m = await rolloutUntil(
          pool,
          config,
          fixed(medium),
          half,
          config.actionNoise,
          config.seed + 101,
          services.progress,
        );
        const e = await rolloutUntil(
          pool,
          config,
          fixed(expert!),
          config.transitions - half,
          config.actionNoise,
          config.seed + 202,
          services.progress,
        );
        transitions = concatTransitions([m, e], obsDim, actDim);
        break;
      }
    }
    if (services.checkpointDir) await removeCheckpoint(services.checkpointDir);
    return {
      config,
      transitions: sliceTransitions(transitions!, 0, transitions!.size, obsDim, actDim),
      medium,
      expert,
      trainingIterations: trained.iteration,
      trainingSteps: trained.steps,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    pool.close();
  }
}

/** Rolls out `policyFor()` episodes until `count` transitions; the cut last row is marked a timeout. */
async function rolloutUntil(
  pool: RolloutPool,
  config: CollectConfig,
  policyFor: () => LinearPolicy,
  count: number,
  actionNoise: number,
  seed: number,
  progress: ProgressFactory,
): Promise<TransitionBuffers> {
  const { obsDim, actDim } = ENV_SPECS[config.env];
  const bar = progress(`rollouts ${config.env} ${config.kind}`, count);
  const parts: TransitionBuffers[] = [];
  for (let round = 0, size = 0; size < count; round++) {
    const policies = Array.from({ length: 8 }, policyFor);
    const batch = await pool.run(policies, {
      seed: seed * 7919 + round * 31,
      rewardShift: 0,
      record: true,
      actionNoise,
    });
    parts.push(batch.transitions!);
    size += batch.transitions!.size;
    bar.update(Math.min(size, count));
  }
  bar.finish();
  const cut = sliceTransitions(concatTransitions(parts, obsDim, actDim), 0, count, obsDim, actDim);
  if (cut.terminals[count - 1] === 0) cut.timeouts[count - 1] = 1;
  return cut;
}

async function train(
  pool: RolloutPool,
  config: CollectConfig,
  needExpert: boolean,
  services: CollectServices,
): Promise<TrainingState> {
  const { obsDim, actDim } = ENV_SPECS[config.env];
  const { ars } = config;
  const fingerprint = JSON.stringify({
    env: config.env,
    seed: config.seed,
    ars,
    mediumScore: config.mediumScore,
    evalEvery: config.evalEvery,
    evalEpisodes: config.evalEpisodes,
    replayEpisodes: config.replayEpisodes,
    explorationNoise: config.explorationNoise,
    workers: services.workers ?? navigator.hardwareConcurrency,
  });
  const resumed = services.checkpointDir
    ? (await loadCheckpoint(services.checkpointDir)) as TrainingState | undefined
    : undefined;
  const state: TrainingState = resumed?.fingerprint === fingerprint ? resumed : {
    iteration: 0,
    weights: new Float64Array(actDim * obsDim),
    statsCount: 0,
    statsMean: new Float64Array(obsDim),
    statsM2: new Float64Array(obsDim),
    steps: 0,
    replay: emptyTransitions(obsDim, actDim),
    fingerprint,
  };
  if (resumed && state === resumed) services.log({ event: "resume", iteration: state.iteration });
  const stats = new RunningStats(obsDim);
  stats.merge(state.statsCount, state.statsMean, state.statsM2);
  // Collected transitions, joined only at checkpoints and at the end (joining every iteration is quadratic).
  const replayParts: TransitionBuffers[] = [state.replay];
  const bar = services.progress(`ARS ${config.env}`, config.maxIterations);
  const done = () =>
    state.medium && (!needExpert || (state.lastEval?.evalScore ?? -Infinity) >= config.expertScore);
  while (!done() && state.iteration < config.maxIterations) {
    const i = state.iteration;
    if (config.kind === "medium-replay" && !state.medium && config.replayEpisodes > 0) {
      // The replay: the current policy exploring, before this iteration's update.
      const explorer = snapshot(state.weights, stats);
      const exploration = await pool.run(Array.from({ length: config.replayEpisodes }, () => explorer), {
        seed: new Rng(deriveSeed(config.seed, i)).nextUint32(),
        rewardShift: 0,
        record: true,
        actionNoise: config.explorationNoise,
      });
      replayParts.push(exploration.transitions!);
      state.steps += exploration.stateCount;
    }
    const directions = sampleDirections(config.seed, i, ars.directions, actDim * obsDim);
    const { mean } = stats;
    const std = stats.std();
    const policies = directions.flatMap((d) => [
      { weights: state.weights.map((w, k) => w + ars.noise * d[k]), mean, std },
      { weights: state.weights.map((w, k) => w - ars.noise * d[k]), mean, std },
    ]);
    const batch = await pool.run(policies, {
      seed: config.seed * 1_000_003 + 2 * i,
      rewardShift: ars.rewardShift,
      record: false,
    });
    const plus = directions.map((_, k) => batch.shiftedReturns[2 * k]);
    const minus = directions.map((_, k) => batch.shiftedReturns[2 * k + 1]);
    arsUpdate(state.weights, directions, plus, minus, ars);
    stats.merge(batch.stateCount, batch.stateMean, batch.stateM2);
    state.steps += batch.stateCount;
    state.iteration = i + 1;
    if (state.iteration % config.evalEvery === 0) {
      const policy = snapshot(state.weights, stats);
      const evaluation = await pool.run(Array.from({ length: config.evalEpisodes }, () => policy), {
        seed: config.seed * 1_000_003 + 2 * i + 1,
        rewardShift: 0,
        record: false,
      });
      const evalReturn = evaluation.returns.reduce((a, b) => a + b, 0) / evaluation.returns.length;
      const evalScore = normalizedScore(config.env, evalReturn);
      state.lastEval = { iteration: state.iteration, evalReturn, evalScore };
      services.log({
        event: "ars-eval",
        iteration: state.iteration,
        steps: state.steps,
        evalReturn,
        evalScore,
        replay: replayParts.reduce((k, p) => k + p.size, 0),
      });
      if (!state.medium && evalScore >= config.mediumScore) {
        state.medium = { policy, iteration: state.iteration, evalReturn, evalScore };
        services.log({
          event: "medium-reached",
          iteration: state.iteration,
          evalScore,
          replay: replayParts.reduce((k, p) => k + p.size, 0),
        });
      }
    }
    state.statsCount = stats.count;
    state.statsMean = stats.mean;
    state.statsM2 = stats.m2;
    bar.update(state.iteration, { score: state.lastEval?.evalScore ?? NaN, steps: state.steps });
    if (services.checkpointDir && state.iteration % 50 === 0) {
      state.replay = concatTransitions(replayParts.splice(0), obsDim, actDim);
      replayParts.push(state.replay);
      await saveCheckpoint(services.checkpointDir, state);
    }
  }
  bar.finish();
  state.replay = concatTransitions(replayParts, obsDim, actDim);
  return state;
}
