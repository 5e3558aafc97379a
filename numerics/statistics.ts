/**
 * Statistics for comparing methods from few runs (Agarwal et al. 2021, "Deep Reinforcement Learning
 * at the Edge of the Statistical Precipice"): the mean and the interquartile mean of episode scores,
 * with percentile-bootstrap confidence intervals that resample every level of how the scores were
 * made.
 *
 * Scores come as a {@link ScoreTree}: nested arrays whose leaves are episode scores, e.g.
 * `[dataset][seed][student][episode]`. The top level holds the strata (datasets: tasks in the
 * paper's terms), which are kept as they are; inside each stratum the children of every node are
 * drawn with replacement, level by level (seeds, then students of each drawn seed, then episodes of
 * each drawn student), and the statistic is computed over the pooled leaves. A single dataset is a
 * tree with one stratum. Resampling every level accounts for each source of variance (which set the
 * seed produced, the student's initialization, the episode's reset noise); it is conservative where
 * a level has few members, which is the honest direction with three seeds.
 *
 * Differences between two methods use the same draws for both when their trees were made with
 * common random numbers (the same seeds, students and environment seeds: {@link pairedDifference}),
 * which removes the variance the two share; otherwise they are resampled independently.
 * @module
 */

import { Rng } from "./random.ts";

/** Episode scores nested by how they were produced: strata at the top, leaves are scores. */
export type ScoreTree = number | readonly ScoreTree[];

/** A statistic of pooled scores. */
export type Statistic = (scores: readonly number[]) => number;

/** Arithmetic mean (NaN for no values). */
export function mean(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  let s = 0;
  for (const v of values) s += v;
  return s / values.length;
}

/** Population mean and standard deviation (numpy's default); NaN for no values. */
export function meanStd(values: readonly number[]): { mean: number; std: number } {
  const m = mean(values);
  if (values.length === 0) return { mean: NaN, std: NaN };
  let s = 0;
  for (const v of values) s += (v - m) ** 2;
  return { mean: m, std: Math.sqrt(s / values.length) };
}

/**
 * The interquartile mean: the mean of the middle half of the sorted values, after dropping
 * ⌊n/4⌋ from each end (`scipy.stats.trim_mean(x, 0.25)`, which rliable uses). Robust to the
 * outlying episodes of locomotion (a fall at step 20, a lucky run), unlike the mean, and far less
 * noisy than the median. NaN for no values.
 */
export function interquartileMean(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  const cut = Math.floor(values.length / 4);
  return mean(Array.from(sorted.subarray(cut, values.length - cut)));
}

/** Every leaf of a tree, in order. */
export function leaves(tree: ScoreTree): number[] {
  if (typeof tree === "number") return [tree];
  const out: number[] = [];
  const walk = (t: ScoreTree) => {
    if (typeof t === "number") out.push(t);
    else for (const c of t) walk(c);
  };
  walk(tree);
  return out;
}

/**
 * One bootstrap draw of a tree's leaves. `draw(n)` picks a child index in [0, n); the root's
 * children are strata and kept when `stratified`. Two trees given the same sequence of `draw`
 * results receive the same resample when their shapes agree (the basis of paired differences).
 */
function resampleLeaves(tree: ScoreTree, draw: (n: number) => number, stratified: boolean): number[] {
  const out: number[] = [];
  const walk = (t: ScoreTree, keep: boolean) => {
    if (typeof t === "number") {
      out.push(t);
      return;
    }
    for (let i = 0; i < t.length; i++) walk(t[keep ? i : draw(t.length)], false);
  };
  walk(tree, stratified);
  return out;
}

/** A point estimate with its confidence interval. */
export interface Interval {
  /** The statistic on the data as observed. */
  readonly estimate: number;
  /** Lower end of the interval. */
  readonly low: number;
  /** Upper end of the interval. */
  readonly high: number;
  /** The interval's confidence level, e.g. 0.95. */
  readonly level: number;
}

/** Settings of a bootstrap. */
export interface BootstrapOptions {
  /** Bootstrap resamples (default 2000). */
  readonly resamples?: number;
  /** Confidence level of the interval (default 0.95). */
  readonly level?: number;
  /** Seed of the resampling (default 0): the same data and seed give the same interval. */
  readonly seed?: number;
  /** Keep the root's children (strata) as they are (default true). */
  readonly stratified?: boolean;
}

/** The `q`-quantile of sorted values with linear interpolation (numpy's default). */
export function quantile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const pos = q * (n - 1);
  const lo = Math.floor(pos), hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (pos - lo) * (sorted[hi] - sorted[lo]);
}

function percentileInterval(estimate: number, draws: Float64Array, level: number): Interval {
  const finite = draws.filter(Number.isFinite).sort();
  const tail = (1 - level) / 2;
  return { estimate, low: quantile(finite, tail), high: quantile(finite, 1 - tail), level };
}

function checkOptions(options: BootstrapOptions): Required<BootstrapOptions> {
  const resamples = options.resamples ?? 2000, level = options.level ?? 0.95;
  if (!Number.isInteger(resamples) || resamples < 1) {
    throw new RangeError(`bootstrap resamples must be a positive integer, got ${resamples}`);
  }
  if (!(level > 0 && level < 1)) throw new RangeError(`confidence level must be in (0, 1), got ${level}`);
  return { resamples, level, seed: options.seed ?? 0, stratified: options.stratified ?? true };
}

/** The statistic of a tree's leaves with its percentile-bootstrap interval. */
export function bootstrapInterval(
  tree: ScoreTree,
  statistic: Statistic,
  options: BootstrapOptions = {},
): Interval {
  const { resamples, level, seed, stratified } = checkOptions(options);
  const rng = new Rng(seed);
  const draw = (n: number) => rng.int(n);
  const draws = new Float64Array(resamples);
  for (let b = 0; b < resamples; b++) draws[b] = statistic(resampleLeaves(tree, draw, stratified));
  return percentileInterval(statistic(leaves(tree)), draws, level);
}

/** Whether two trees have the same nesting and sizes at every node (what pairing requires). */
export function sameShape(a: ScoreTree, b: ScoreTree): boolean {
  if (typeof a === "number" || typeof b === "number") return typeof a === typeof b;
  return a.length === b.length && a.every((c, i) => sameShape(c, b[i]));
}

/** A difference of a statistic between two methods, with its interval and whether it was paired. */
export interface Difference extends Interval {
  /** True when both trees were resampled with the same draws (common random numbers). */
  readonly paired: boolean;
  /** True when the interval excludes 0. */
  readonly significant: boolean;
}

/**
 * statistic(a) − statistic(b) with its bootstrap interval. With `paired` (the trees come from common
 * random numbers and have the same shape), every resample applies the same draws to both trees;
 * otherwise each is resampled on its own.
 */
export function pairedDifference(
  a: ScoreTree,
  b: ScoreTree,
  statistic: Statistic,
  paired: boolean,
  options: BootstrapOptions = {},
): Difference {
  const { resamples, level, seed, stratified } = checkOptions(options);
  if (paired && !sameShape(a, b)) {
    throw new RangeError("paired differences need two score trees of the same shape");
  }
  const rngA = new Rng(seed), rngB = paired ? undefined : new Rng(seed + 1);
  const draws = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    if (paired) {
      // Record the draws made for a and replay them for b.
      const made: number[] = [];
      const sampleA = resampleLeaves(a, (n) => {
        const i = rngA.int(n);
        made.push(i);
        return i;
      }, stratified);
      let k = 0;
      const sampleB = resampleLeaves(b, () => made[k++], stratified);
      draws[r] = statistic(sampleA) - statistic(sampleB);
    } else {
      draws[r] = statistic(resampleLeaves(a, (n) => rngA.int(n), stratified)) -
        statistic(resampleLeaves(b, (n) => rngB!.int(n), stratified));
    }
  }
  const interval = percentileInterval(statistic(leaves(a)) - statistic(leaves(b)), draws, level);
  return { ...interval, paired, significant: interval.low > 0 || interval.high < 0 };
}
