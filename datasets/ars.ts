/**
 * Augmented Random Search (Mania, Guy and Recht 2018, "Simple random search provides a competitive
 * approach to reinforcement learning"), version V2-t: a linear policy on normalized observations,
 *
 *     a = clip(M · (s − μ) / σ, −1, 1),
 *
 * improved by finite differences along random directions δ_k ~ N(0, I):
 *
 *     r±_k = return of M ± ν δ_k,   keep the b directions with the largest max(r+_k, r−_k),
 *     M ← M + α / (b σ_R) · Σ_top (r+_k − r−_k) δ_k,   σ_R = std of the 2b kept returns,
 *
 * with μ, σ the running mean and std of every state visited while training. It needs only rollouts,
 * which is why it is our behaviour-policy trainer: no gradients, fast on two CPU cores.
 *
 * This module holds the algorithm's pieces; `collect.ts` drives them across worker threads.
 * @module
 */

import type { VecLocomotionEnv } from "../envs/locomotion.ts";
import type { D4rlEnvName } from "../envs/specs.ts";
import { Rng } from "../numerics/random.ts";

/** ARS hyperparameters. */
export interface ArsConfig {
  /** Directions sampled per iteration (N). */
  readonly directions: number;
  /** Directions kept for the update (b ≤ N). */
  readonly topDirections: number;
  /** Step size α. */
  readonly stepSize: number;
  /** Exploration noise ν. */
  readonly noise: number;
  /**
   * Subtracted from every training reward (not from recorded rewards): removes the alive bonus so
   * that standing still is not a local optimum (the ARS paper's "shift" for Hopper and Walker2d).
   */
  readonly rewardShift: number;
}

/**
 * Per-environment defaults, near the V2-t settings of the ARS paper. Hopper uses twice the paper's
 * directions (16, top 8): learning per iteration is similar, and the medium-replay buffer it leaves
 * (≈ 236k transitions at seed 0) is closer to D4RL's 402k.
 */
export const ARS_DEFAULTS: Readonly<Record<D4rlEnvName, ArsConfig>> = {
  hopper: { directions: 16, topDirections: 8, stepSize: 0.01, noise: 0.025, rewardShift: 1 },
  halfcheetah: { directions: 32, topDirections: 4, stepSize: 0.02, noise: 0.03, rewardShift: 0 },
  walker2d: { directions: 40, topDirections: 30, stepSize: 0.03, noise: 0.025, rewardShift: 1 },
};

/** Running mean/variance of observations (Chan et al.'s parallel Welford merge). */
export class RunningStats {
  count = 0;
  readonly mean: Float64Array;
  /** Sum of squared deviations from the mean. */
  readonly m2: Float64Array;

  constructor(dim: number) {
    this.mean = new Float64Array(dim);
    this.m2 = new Float64Array(dim);
  }

  /** Merges a batch summarized by its count, mean and sum of squared deviations. */
  merge(count: number, mean: ArrayLike<number>, m2: ArrayLike<number>): void {
    if (count === 0) return;
    const total = this.count + count;
    for (let i = 0; i < this.mean.length; i++) {
      const delta = mean[i] - this.mean[i];
      this.mean[i] += (delta * count) / total;
      this.m2[i] += m2[i] + (delta * delta * this.count * count) / total;
    }
    this.count = total;
  }

  /** Standard deviation per dimension; 1 where there is no information yet (ARS's convention). */
  std(): Float64Array {
    return this.m2.map((m) => {
      const variance = this.count > 1 ? m / this.count : 0;
      return variance > 1e-8 ? Math.sqrt(variance) : 1;
    });
  }
}

/** A linear policy together with the normalization it acts under. */
export interface LinearPolicy {
  /** actDim × obsDim, row-major. */
  readonly weights: Float64Array;
  /** Observation mean μ the policy subtracts, length obsDim. */
  readonly mean: Float64Array;
  /** Observation std σ the policy divides by, length obsDim. */
  readonly std: Float64Array;
}

/** a = clip(W (s − μ)/σ, −1, 1) for one observation, written into `out` at `outOffset`. */
export function linearAct(
  policy: LinearPolicy,
  obs: ArrayLike<number>,
  obsOffset: number,
  obsDim: number,
  out: Float32Array,
  outOffset: number,
  actDim: number,
  scratch: Float64Array,
): void {
  for (let j = 0; j < obsDim; j++) scratch[j] = (obs[obsOffset + j] - policy.mean[j]) / policy.std[j];
  for (let i = 0; i < actDim; i++) {
    let a = 0;
    const row = i * obsDim;
    for (let j = 0; j < obsDim; j++) a += policy.weights[row + j] * scratch[j];
    out[outOffset + i] = a < -1 ? -1 : a > 1 ? 1 : a;
  }
}

/** Transitions in D4RL's layout, growing as rollouts append to it. */
export interface TransitionBuffers {
  /** States, row-major [capacity × obsDim]; the first `size` rows are valid. */
  observations: Float32Array;
  /** Actions, row-major [capacity × actDim]. */
  actions: Float32Array;
  /** Reward of each transition, length capacity. */
  rewards: Float32Array;
  /** Successor states, row-major [capacity × obsDim]. */
  nextObservations: Float32Array;
  /** 1 where the episode ended in a terminal state, else 0. */
  terminals: Uint8Array;
  /** 1 where the episode was cut off by the time limit, else 0. */
  timeouts: Uint8Array;
  /** Number of valid transitions (rows) in the buffers. */
  size: number;
}

/** An empty transition buffer. */
export function emptyTransitions(obsDim: number, actDim: number, capacity = 4096): TransitionBuffers {
  return {
    observations: new Float32Array(capacity * obsDim),
    actions: new Float32Array(capacity * actDim),
    rewards: new Float32Array(capacity),
    nextObservations: new Float32Array(capacity * obsDim),
    terminals: new Uint8Array(capacity),
    timeouts: new Uint8Array(capacity),
    size: 0,
  };
}

function grow<T extends Float32Array | Uint8Array>(a: T, length: number): T {
  if (a.length >= length) return a;
  const b = new (a.constructor as { new (n: number): T })(Math.max(length, 2 * a.length));
  b.set(a);
  return b;
}

/** Appends one transition (copying the arrays), growing the buffers geometrically. */
export function pushTransition(
  buf: TransitionBuffers,
  obsDim: number,
  actDim: number,
  obs: ArrayLike<number>,
  obsOffset: number,
  action: ArrayLike<number>,
  actOffset: number,
  reward: number,
  nextObs: ArrayLike<number>,
  nextOffset: number,
  terminal: boolean,
  timeout: boolean,
): void {
  const n = buf.size + 1;
  buf.observations = grow(buf.observations, n * obsDim);
  buf.nextObservations = grow(buf.nextObservations, n * obsDim);
  buf.actions = grow(buf.actions, n * actDim);
  buf.rewards = grow(buf.rewards, n);
  buf.terminals = grow(buf.terminals, n);
  buf.timeouts = grow(buf.timeouts, n);
  const i = buf.size;
  for (let j = 0; j < obsDim; j++) {
    buf.observations[i * obsDim + j] = obs[obsOffset + j];
    buf.nextObservations[i * obsDim + j] = nextObs[nextOffset + j];
  }
  for (let j = 0; j < actDim; j++) buf.actions[i * actDim + j] = action[actOffset + j];
  buf.rewards[i] = reward;
  buf.terminals[i] = terminal ? 1 : 0;
  buf.timeouts[i] = timeout ? 1 : 0;
  buf.size = n;
}

/** Rows [start, end) of a transition buffer, as a new trimmed buffer. */
export function sliceTransitions(
  t: TransitionBuffers,
  start: number,
  end: number,
  obsDim: number,
  actDim: number,
): TransitionBuffers {
  return {
    observations: t.observations.slice(start * obsDim, end * obsDim),
    actions: t.actions.slice(start * actDim, end * actDim),
    rewards: t.rewards.slice(start, end),
    nextObservations: t.nextObservations.slice(start * obsDim, end * obsDim),
    terminals: t.terminals.slice(start, end),
    timeouts: t.timeouts.slice(start, end),
    size: end - start,
  };
}

/** What a batch of rollouts returns. */
export interface RolloutBatch {
  /** Undiscounted true returns (rewards as recorded, no shift). */
  readonly returns: Float64Array;
  /** Returns with the reward shift applied (what ARS optimizes). */
  readonly shiftedReturns: Float64Array;
  readonly lengths: Int32Array;
  /** Summary of visited states for the running normalization. */
  readonly stateCount: number;
  readonly stateMean: Float64Array;
  readonly stateM2: Float64Array;
  /** Every transition, when recording was requested. */
  readonly transitions?: TransitionBuffers;
}

/**
 * Rolls out one episode per policy, all in lockstep on a vectorized environment with
 * `policies.length` environments. `actionNoise` adds Gaussian noise (then clips), as a stochastic
 * behaviour policy would.
 */
export function rollouts(
  env: VecLocomotionEnv,
  policies: readonly LinearPolicy[],
  options: {
    readonly rewardShift: number;
    readonly record: boolean;
    readonly actionNoise?: number;
    readonly rng?: Rng;
  },
): RolloutBatch {
  const { obsDim, actDim } = env.spec;
  const n = policies.length;
  if (env.numEnvs !== n) throw new RangeError(`need ${n} environments, have ${env.numEnvs}`);
  const returns = new Float64Array(n);
  const shiftedReturns = new Float64Array(n);
  const lengths = new Int32Array(n);
  const active = new Uint8Array(n).fill(1);
  const actions = new Float32Array(n * actDim);
  const prevObs = new Float32Array(n * obsDim);
  const scratch = new Float64Array(obsDim);
  // One buffer per environment, concatenated at the end: D4RL stores each episode contiguously.
  const perEnv = options.record
    ? Array.from({ length: n }, () => emptyTransitions(obsDim, actDim, 256))
    : undefined;
  // Welford over visited states (the states actions were taken in).
  let count = 0;
  const mean = new Float64Array(obsDim);
  const m2 = new Float64Array(obsDim);
  env.resetAll();
  let remaining = n;
  while (remaining > 0) {
    prevObs.set(env.obs);
    for (let i = 0; i < n; i++) {
      if (!active[i]) continue;
      linearAct(policies[i], env.obs, i * obsDim, obsDim, actions, i * actDim, actDim, scratch);
      if (options.actionNoise) {
        for (let j = 0; j < actDim; j++) {
          const a = actions[i * actDim + j] + options.actionNoise * options.rng!.normal();
          actions[i * actDim + j] = a < -1 ? -1 : a > 1 ? 1 : a;
        }
      }
      count++;
      for (let j = 0; j < obsDim; j++) {
        const x = env.obs[i * obsDim + j];
        const delta = x - mean[j];
        mean[j] += delta / count;
        m2[j] += delta * (x - mean[j]);
      }
    }
    const step = env.step(actions, active);
    for (let i = 0; i < n; i++) {
      if (!active[i]) continue;
      const r = step.rewards[i];
      returns[i] += r;
      shiftedReturns[i] += r - options.rewardShift;
      lengths[i]++;
      const terminal = step.terminated[i] === 1;
      const timeout = !terminal && step.truncated[i] === 1;
      if (perEnv) {
        pushTransition(
          perEnv[i],
          obsDim,
          actDim,
          prevObs,
          i * obsDim,
          actions,
          i * actDim,
          r,
          step.obs,
          i * obsDim,
          terminal,
          timeout,
        );
      }
      if (terminal || timeout) {
        active[i] = 0;
        remaining--;
      }
    }
  }
  const transitions = perEnv ? concatTransitions(perEnv, obsDim, actDim) : undefined;
  return { returns, shiftedReturns, lengths, stateCount: count, stateMean: mean, stateM2: m2, transitions };
}

/** The rows of several buffers one after the other, trimmed to their sizes. */
export function concatTransitions(
  parts: readonly TransitionBuffers[],
  obsDim: number,
  actDim: number,
): TransitionBuffers {
  const size = parts.reduce((k, p) => k + p.size, 0);
  const out = emptyTransitions(obsDim, actDim, size);
  let at = 0;
  for (const p of parts) {
    out.observations.set(p.observations.subarray(0, p.size * obsDim), at * obsDim);
    out.nextObservations.set(p.nextObservations.subarray(0, p.size * obsDim), at * obsDim);
    out.actions.set(p.actions.subarray(0, p.size * actDim), at * actDim);
    out.rewards.set(p.rewards.subarray(0, p.size), at);
    out.terminals.set(p.terminals.subarray(0, p.size), at);
    out.timeouts.set(p.timeouts.subarray(0, p.size), at);
    at += p.size;
  }
  out.size = size;
  return out;
}

/** Draws the N directions of one iteration from a stream seeded by (seed, iteration), for exact resume. */
export function sampleDirections(
  seed: number,
  iteration: number,
  count: number,
  size: number,
): Float64Array[] {
  const rng = new Rng(((seed * 1_000_003) ^ iteration) >>> 0);
  return Array.from({ length: count }, () => rng.fillNormal(new Float64Array(size)));
}

/** The ARS V2-t update of `weights` in place; returns σ_R. */
export function arsUpdate(
  weights: Float64Array,
  directions: readonly Float64Array[],
  plus: ArrayLike<number>,
  minus: ArrayLike<number>,
  config: ArsConfig,
): number {
  const order = directions.map((_, k) => k).sort((i, j) =>
    Math.max(plus[j], minus[j]) - Math.max(plus[i], minus[i])
  );
  const top = order.slice(0, config.topDirections);
  const kept = top.flatMap((k) => [plus[k], minus[k]]);
  const m = kept.reduce((a, b) => a + b, 0) / kept.length;
  const sigmaR = Math.sqrt(kept.reduce((a, b) => a + (b - m) ** 2, 0) / kept.length) || 1;
  const scale = config.stepSize / (config.topDirections * sigmaR);
  for (const k of top) {
    const diff = plus[k] - minus[k];
    const d = directions[k];
    for (let i = 0; i < weights.length; i++) weights[i] += scale * diff * d[i];
  }
  return sigmaR;
}
