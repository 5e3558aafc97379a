/**
 * The `density` stage: how common every state of the offline data is, and the weights of state
 * density-weighted distillation that favour rare states.
 *
 * States are normalized as everywhere else, z = (s − mean) / (std + 1e-3) with the load stage's
 * statistics, and scored by a Gaussian kernel density estimate over reference states x_j (all states,
 * or a seeded subsample of M):
 *
 *     p̂(z) = (1/M) Σ_j N(z; x_j, h² I),   w(z) ∝ p̂(z)^(−α),
 *
 * weights normalized to mean 1 over the data, clipped at a quantile and renormalized (`numerics/kde.ts`).
 *
 * Inputs it refuses or handles, never producing a NaN weight:
 * - a non-finite state value: an "input" error naming the state and dimension;
 * - a constant dimension (the same value in every state): dropped before estimating, and listed in
 *   `constantDimensions`. It would only add the same term to every log-density — irrelevant to the
 *   weights — while Scott's and Silverman's scale would count it as zero spread. The log-densities are
 *   those of the remaining dimensions. All dimensions constant: an "input" error;
 * - a bandwidth ≤ 0 or not finite, α < 0, a clip quantile outside (0, 1]: "config" errors;
 * - reference states that are all identical with a bandwidth rule: a "numeric" error.
 * @module
 */

import { fail } from "../core/errors.ts";
import { defineStage, type Stage } from "../core/stage.ts";
import {
  checkBandwidth,
  checkPoints,
  densityWeights,
  gaussianKdeLogDensity,
  type OnProgress,
  scottBandwidth,
  silvermanBandwidth,
  type WeightStats,
} from "../numerics/kde.ts";
import { Rng } from "../numerics/random.ts";
import type { OfflineDataset } from "./load.ts";

/** Settings of the density stage (all part of its cache key). */
export interface DensityConfig {
  /** Bandwidth h in normalized-state units: Scott's or Silverman's rule, or a fixed value > 0. */
  readonly bandwidth: "scott" | "silverman" | number;
  /** Temperature α of w ∝ p̂^(−α): ≥ 0, 0 gives uniform weights. */
  readonly alpha: number;
  /** Reference states: a seeded subsample of this many (0, or ≥ the number of states: all of them). */
  readonly referenceSize: number;
  /** Weights above this quantile are lowered to it, then renormalized: in (0, 1], 1 = no clipping. */
  readonly clipQuantile: number;
  /** Seed of the reference subsample. */
  readonly seed: number;
  /** Relative error bound ε of the pruned estimate: log-densities are within ε below the exact ones. */
  readonly tolerance: number;
  /** `tree` (pruned, with the bound above) or `brute` (every pair, on the tensor backend). */
  readonly method: "tree" | "brute";
  /** Query states per block. */
  readonly blockSize: number;
}

/** The defaults: Scott's rule, α = 1, all states as reference, clipping at the 99th percentile. */
export const DEFAULT_DENSITY_CONFIG: DensityConfig = {
  bandwidth: "scott",
  alpha: 1,
  referenceSize: 0,
  clipQuantile: 0.99,
  seed: 0,
  tolerance: 1e-4,
  method: "tree",
  blockSize: 64,
};

/** Per-state log-densities and weights, with how they were obtained. */
export interface StateDensity {
  /** Number of states (rows of the dataset's observations). */
  readonly n: number;
  /** log p̂ of every state (normalized, non-constant coordinates). */
  readonly logDensity: Float32Array;
  /** Weight of every state, mean 1. */
  readonly weight: Float32Array;
  /** The bandwidth used, in normalized-state units. */
  readonly bandwidth: number;
  /** How it was chosen. */
  readonly bandwidthRule: "scott" | "silverman" | "fixed";
  /** Reference states used (M). */
  readonly referenceSize: number;
  /** Dimensions of the estimate (state dimensions minus the constant ones). */
  readonly dimensions: number;
  /** Indices of the constant state dimensions that were dropped. */
  readonly constantDimensions: readonly number[];
  /** Temperature α of w ∝ p̂^(−α) that was used. */
  readonly alpha: number;
  /** Quantile at which the weights were clipped. */
  readonly clipQuantile: number;
  /** The weight (before renormalization) at which weights were clipped. */
  readonly clipValue: number;
  /** States whose weight was clipped. */
  readonly clipped: number;
  /** How the log-densities were computed. */
  readonly method: "tree" | "brute";
  /** Largest bound on (exact − computed) log-density over the states (0 for brute force). */
  readonly errorBound: number;
  /** Minimum, maximum and mean of `logDensity`. */
  readonly logDensityStats: { readonly min: number; readonly max: number; readonly mean: number };
  /** Summary statistics of `weight`. */
  readonly weightStats: WeightStats;
}

/** Fails with "config" on the first invalid setting, naming it. */
export function validateDensityConfig(config: DensityConfig): void {
  const bad = (what: string, hint: string): never => fail("config", `density.${what}`, hint);
  const { bandwidth, alpha, referenceSize, clipQuantile, seed, tolerance, method, blockSize } = config;
  if (typeof bandwidth === "number") checkBandwidth(bandwidth);
  else if (bandwidth !== "scott" && bandwidth !== "silverman") {
    bad(
      `bandwidth "${bandwidth}" is not scott, silverman or a number`,
      "e.g. scott, or a fixed value such as 0.3",
    );
  }
  if (!(Number.isFinite(alpha) && alpha >= 0)) {
    bad(`alpha ${alpha} is not a finite number ≥ 0`, "e.g. 1 (w = 1/p̂)");
  }
  if (!(Number.isInteger(referenceSize) && referenceSize >= 0)) {
    bad(`referenceSize ${referenceSize} is not an integer ≥ 0`, "0 uses every state");
  }
  if (!(clipQuantile > 0 && clipQuantile <= 1)) {
    bad(`clipQuantile ${clipQuantile} is not in (0, 1]`, "e.g. 0.99; 1 disables clipping");
  }
  if (!Number.isInteger(seed)) bad(`seed ${seed} is not an integer`, "e.g. 0");
  if (!(tolerance >= 1e-5 && tolerance < 1)) bad(`tolerance ${tolerance} is not in [1e-5, 1)`, "e.g. 1e-4");
  if (method !== "tree" && method !== "brute") {
    bad(`method "${method}" is not tree or brute`, "tree is the default");
  }
  if (!(Number.isInteger(blockSize) && blockSize >= 1)) {
    bad(`blockSize ${blockSize} is not a positive integer`, "e.g. 64");
  }
}

/**
 * The whole computation on raw states (`[n, dim]`) and the normalization statistics (`std` already
 * includes its + 1e-3): validation, normalization, reference subsample, bandwidth, log-densities,
 * weights. Shared by the stage and `deno task density`.
 */
export async function computeStateDensity(
  states: Float32Array | Float64Array,
  dim: number,
  mean: ArrayLike<number>,
  std: ArrayLike<number>,
  config: DensityConfig,
  onProgress?: OnProgress,
): Promise<StateDensity> {
  validateDensityConfig(config);
  const n = checkPoints(states, dim, "states");
  for (let k = 0; k < dim; k++) {
    if (!(Number.isFinite(mean[k]) && Number.isFinite(std[k]) && std[k] > 0)) {
      fail(
        "numeric",
        `normalization of dimension ${k} is unusable (mean ${mean[k]}, std ${std[k]})`,
        "recompute the dataset's statistics",
      );
    }
  }
  // Constant dimensions (one value in every state) are dropped; see the module notes.
  const kept: number[] = [], constant: number[] = [];
  for (let k = 0; k < dim; k++) {
    let lo = states[k], hi = states[k];
    for (let i = 1; i < n; i++) {
      const v = states[i * dim + k];
      if (v < lo) lo = v;
      else if (v > hi) hi = v;
    }
    (hi > lo ? kept : constant).push(k);
  }
  if (kept.length === 0) {
    fail(
      "input",
      `every one of the ${dim} state dimensions is constant over the ${n} states: there is no density to estimate`,
      "use a dataset whose states vary",
    );
  }
  const d = kept.length;
  const z = new Float64Array(n * d);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < d; j++) z[i * d + j] = (states[i * dim + kept[j]] - mean[kept[j]]) / std[kept[j]];
  }
  let reference = z, m = n;
  if (config.referenceSize > 0 && config.referenceSize < n) {
    m = config.referenceSize;
    const rows = new Rng(config.seed).sampleWithoutReplacement(n, m).sort();
    reference = new Float64Array(m * d);
    rows.forEach((r, i) => reference.set(z.subarray(r * d, (r + 1) * d), i * d));
  }
  let h: number, rule: StateDensity["bandwidthRule"];
  if (typeof config.bandwidth === "number") [h, rule] = [config.bandwidth, "fixed"];
  else {
    if (m < 2) {
      fail(
        "input",
        `a bandwidth rule needs at least 2 reference states, got ${m}`,
        "use more states or a fixed bandwidth",
      );
    }
    [h, rule] = [
      config.bandwidth === "scott" ? scottBandwidth(reference, d) : silvermanBandwidth(reference, d),
      config.bandwidth,
    ];
  }
  const kde = await gaussianKdeLogDensity(z, reference, d, h, {
    method: config.method,
    tolerance: config.tolerance,
    blockSize: config.blockSize,
    onProgress,
  });
  const w = densityWeights(kde.logDensity, { alpha: config.alpha, clipQuantile: config.clipQuantile });
  let lo = Infinity, hi = -Infinity, sum = 0;
  for (const v of kde.logDensity) {
    if (v < lo) lo = v;
    if (v > hi) hi = v;
    sum += v;
  }
  return {
    n,
    logDensity: Float32Array.from(kde.logDensity),
    weight: Float32Array.from(w.weight),
    bandwidth: h,
    bandwidthRule: rule,
    referenceSize: m,
    dimensions: d,
    constantDimensions: constant,
    alpha: config.alpha,
    clipQuantile: config.clipQuantile,
    clipValue: w.clipValue,
    clipped: w.clipped,
    method: kde.method,
    errorBound: kde.errorBound,
    logDensityStats: { min: lo, max: hi, mean: sum / n },
    weightStats: w.stats,
  };
}

/** The density stage: {@link computeStateDensity} on the load stage's dataset, summary in the manifest. */
export const densityStage: Stage<
  { dataset: OfflineDataset },
  DensityConfig,
  StateDensity & { readonly datasetSha256: string }
> = defineStage<
  { dataset: OfflineDataset },
  DensityConfig,
  StateDensity & { readonly datasetSha256: string }
>({
  name: "density",
  version: "1",
  validate: validateDensityConfig,
  compute: async ({ dataset }, config, ctx) => {
    const progress = ctx.progress("density", dataset.n);
    const result = await computeStateDensity(
      dataset.observations,
      dataset.obsDim,
      dataset.stateMean,
      dataset.stateStd,
      config,
      (done) => progress.update(done),
    );
    progress.finish();
    const q = result.weightStats.quantiles;
    const metrics: Record<string, number | string> = {
      bandwidth: result.bandwidth,
      bandwidthRule: result.bandwidthRule,
      referenceSize: result.referenceSize,
      dimensions: result.dimensions,
      constantDimensions: result.constantDimensions.join(",") || "none",
      method: result.method,
      logDensityErrorBound: result.errorBound,
      logDensityMin: result.logDensityStats.min,
      logDensityMax: result.logDensityStats.max,
      logDensityMean: result.logDensityStats.mean,
      clipValue: result.clipValue,
      clippedStates: result.clipped,
      weightMin: result.weightStats.min,
      weightMax: result.weightStats.max,
      weightP01: q.p01,
      weightP05: q.p05,
      weightP25: q.p25,
      weightP50: q.p50,
      weightP75: q.p75,
      weightP95: q.p95,
      weightP99: q.p99,
      effectiveSampleSize: result.weightStats.effectiveSampleSize,
      effectiveSampleFraction: result.weightStats.effectiveSampleFraction,
    };
    for (const [name, value] of Object.entries(metrics)) ctx.metric(name, value);
    // The dataset's identity travels with the weights, so distill can refuse weights of another dataset.
    return { ...result, datasetSha256: dataset.sha256 };
  },
});
