/**
 * Policy evaluation in the MuJoCo environments: `episodes` environments run side by side, one
 * episode each, until each terminates or reaches the horizon (no auto-reset: a finished environment
 * is masked out with `active`). Returns the undiscounted return of every episode and its D4RL
 * normalized score. Deterministic for a seed when the policy is.
 *
 * The policy receives raw observations — whatever normalization it was trained with is its own
 * business (the teacher and student wrappers normalize inside `act`).
 * @module
 */

import { VecLocomotionEnv } from "./locomotion.ts";
import { type EnvName, normalizedScore } from "./specs.ts";

/**
 * A batch policy: `states` holds `n` raw observations row-major (n × obsDim); returns n × actDim
 * actions. May be async (a GPU backend downloads actions with `await data()`).
 */
export type BatchPolicy = (states: Float32Array, n: number) => Float32Array | Promise<Float32Array>;

/**
 * A dataset's own reference returns (Minari's `ref_min_score`, `ref_max_score`): scores are then
 * 100 · (return − min) / (max − min) instead of the environment's D4RL normalization.
 */
export interface ScoreReference {
  /** The return scored 0. */
  readonly min: number;
  /** The return scored 100. */
  readonly max: number;
}

/** What {@link evaluatePolicy} measured. */
export interface Evaluation {
  /** Environment the policy ran in. */
  readonly env: EnvName;
  /** Number of episodes run. */
  readonly episodes: number;
  /** Seed of the episodes' reset noise. */
  readonly seed: number;
  /** Undiscounted return of each episode. */
  readonly returns: Float64Array;
  /** Normalized score (percent) of each episode: D4RL's, or against the `reference` given. */
  readonly normalizedScores: Float64Array;
  /** Environment steps of each episode. */
  readonly lengths: Int32Array;
  /** Mean of `returns`. */
  readonly meanReturn: number;
  /** Mean of `normalizedScores`, the number papers report. */
  readonly meanNormalizedScore: number;
  /** Population standard deviation of `normalizedScores`. */
  readonly stdNormalizedScore: number;
}

/**
 * Runs `episodes` episodes of `act` in `env`; episode i starts from the reset noise of the i-th
 * fork of `new Rng(seed)` (see `VecLocomotionEnv.create`). Scores are normalized with `reference`
 * when given (a dataset's own reference returns), else with the environment's.
 */
export async function evaluatePolicy(
  env: EnvName,
  act: BatchPolicy,
  episodes: number,
  seed: number,
  reference?: ScoreReference,
): Promise<Evaluation> {
  if (!Number.isInteger(episodes) || episodes < 1) {
    throw new RangeError(`episodes must be a positive integer, got ${episodes}`);
  }
  const vec = await VecLocomotionEnv.create(env, episodes, { seed });
  try {
    const { obsDim, actDim } = vec.spec;
    const returns = new Float64Array(episodes);
    const lengths = new Int32Array(episodes);
    const active = new Uint8Array(episodes).fill(1);
    const actions = new Float32Array(episodes * actDim);
    const batch = new Float32Array(episodes * obsDim);
    const rows = new Int32Array(episodes);
    vec.resetAll();
    let live = episodes;
    while (live > 0) {
      // The policy sees only the environments still running, packed.
      let m = 0;
      for (let i = 0; i < episodes; i++) {
        if (!active[i]) continue;
        batch.set(vec.obs.subarray(i * obsDim, (i + 1) * obsDim), m * obsDim);
        rows[m++] = i;
      }
      const out = await act(batch.subarray(0, m * obsDim), m);
      if (out.length !== m * actDim) {
        throw new RangeError(
          `the policy returned ${out.length} action values for ${m} states of ${actDim} actions`,
        );
      }
      for (let k = 0; k < m; k++) actions.set(out.subarray(k * actDim, (k + 1) * actDim), rows[k] * actDim);
      const step = vec.step(actions, active);
      for (let k = 0; k < m; k++) {
        const i = rows[k];
        returns[i] += step.rewards[i];
        lengths[i]++;
        if (step.terminated[i] || step.truncated[i]) {
          active[i] = 0;
          live--;
        }
      }
    }
    const normalizedScores = returns.map((r) =>
      reference ? (100 * (r - reference.min)) / (reference.max - reference.min) : normalizedScore(env, r)
    );
    const mean = (a: Float64Array) => a.reduce((s, x) => s + x, 0) / a.length;
    const meanNormalizedScore = mean(normalizedScores);
    const variance = normalizedScores.reduce((s, x) => s + (x - meanNormalizedScore) ** 2, 0) / episodes;
    return {
      env,
      episodes,
      seed,
      returns,
      normalizedScores,
      lengths,
      meanReturn: mean(returns),
      meanNormalizedScore,
      stdNormalizedScore: Math.sqrt(variance),
    };
  } finally {
    vec.dispose();
  }
}
