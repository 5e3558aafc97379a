/**
 * The `subset` stage of the diversity study (the SDW paper's analysis): N real states of an offline
 * dataset chosen to differ in one property at a time, with the actions a student will imitate.
 *
 * Kinds of subsets (all of exactly N distinct states, seeded):
 * - `random`: uniform, the reference (the same draw as Random selection's set of that seed);
 * - `quality`: states of the highest-return episodes — episodes sorted by return, their states
 *   pooled until the pool holds `qualityFraction` of the transitions (and at least N), N drawn
 *   uniformly from the pool;
 * - `diverse`: inverse-density sampling — N states drawn without replacement with probability
 *   ∝ p̂(s)^(−α), p̂ the density stage's KDE of the data (the exponential-race form of weighted
 *   sampling without replacement: the N smallest log E_i + α·log p̂_i, E_i ~ Exp(1));
 * - `kcenter`: greedy k-center in normalized state space — a seeded first state, then each time
 *   the state farthest from those chosen (Gonzalez's 2-approximation of the smallest coverage radius).
 *
 * Targets are the data's own actions or the teacher's deterministic actions on the chosen states.
 *
 * Each subset is measured: diversity as the mean log-density of its states under the full data's KDE
 * (lower: rarer states) and the coverage radius max_i min_j ‖z_i − z_j‖ over all the data's normalized
 * states z_i and the subset's z_j (with the mean of that nearest distance); quality as the mean
 * undiscounted return-to-go of its states and the mean return of their episodes. Episodes of the
 * Q-learning view are recovered where a transition is terminal or its next state is not the next
 * row's state.
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { fail } from "../core/errors.ts";
import { defineStage, type Stage } from "../core/stage.ts";
import { deriveSeed, Rng } from "../numerics/random.ts";
import type { StateDensity } from "./density.ts";
import { normalizeStates, type OfflineDataset } from "./load.ts";
import { randomRealSet, type SyntheticSet } from "./synset.ts";
import { type TeacherArtifact, teacherFromArtifact } from "./teacher/model.ts";

/** The kinds of subsets. */
export const SUBSET_KINDS = ["random", "quality", "diverse", "kcenter"] as const;
/** One of {@link SUBSET_KINDS}. */
export type SubsetKind = (typeof SUBSET_KINDS)[number];

/** Whose actions the students imitate. */
export const TARGETS = ["data", "teacher"] as const;
/** One of {@link TARGETS}. */
export type Targets = (typeof TARGETS)[number];

/** Settings of one subset (the study passes only the parameters its kind uses, so keys stay minimal). */
export interface SubsetConfig {
  /** How states are chosen. */
  readonly kind: SubsetKind;
  /** N, the number of states. */
  readonly size: number;
  /** Seed of the draw. */
  readonly seed: number;
  /** The data's actions or the teacher's. */
  readonly targets: Targets;
  /** `quality`: the share of transitions, from the best episodes down, that the N states are drawn from. */
  readonly qualityFraction?: number;
  /** `diverse`: the temperature α of p̂^(−α). */
  readonly alpha?: number;
}

/** How diverse and how good a subset's states are. */
export interface SubsetMeasures {
  /** Mean log p̂ of its states under the full data's KDE (the density stage's values). */
  readonly meanLogDensity: number;
  /** max over the data's states of the distance to the nearest subset state (normalized space). */
  readonly coverageRadius: number;
  /** Mean over the data's states of that distance. */
  readonly meanCoverageDistance: number;
  /** Mean undiscounted return-to-go of its states. */
  readonly meanReturnToGo: number;
  /** Mean undiscounted return of its states' episodes. */
  readonly meanEpisodeReturn: number;
}

/** A subset: a set of real pairs (with targets), which rows it took, and its measures. */
export interface Subset extends SyntheticSet {
  /** The kind of subset. */
  readonly kind: SubsetKind;
  /** Whose actions `actions` are. */
  readonly targets: Targets;
  /** Dataset rows of its states, in the order chosen. */
  readonly indices: Int32Array;
  /** Its diversity and quality. */
  readonly measures: SubsetMeasures;
}

/** Fails with "config" on the first unusable setting, naming it. */
export function validateSubsetConfig(config: SubsetConfig): void {
  if (!(SUBSET_KINDS as readonly string[]).includes(config.kind)) {
    fail("config", `subset kind "${config.kind}" is unknown`, `choose one of ${SUBSET_KINDS.join(", ")}`);
  }
  if (!Number.isInteger(config.size) || config.size < 1) {
    fail("config", `subset size ${config.size} must be a positive integer`, "e.g. --size 256");
  }
  if (!Number.isInteger(config.seed) || config.seed < 0) {
    fail("config", `subset seed ${config.seed} must be a non-negative integer`);
  }
  if (!(TARGETS as readonly string[]).includes(config.targets)) {
    fail("config", `targets "${config.targets}" are unknown`, "choose data, teacher or both");
  }
  const q = config.qualityFraction;
  if (config.kind === "quality" && !(q !== undefined && q > 0 && q <= 1)) {
    fail("config", `qualityFraction ${q} must be in (0, 1]`, "e.g. 0.1: the best tenth of the transitions");
  }
  const a = config.alpha;
  if (config.kind === "diverse" && !(a !== undefined && Number.isFinite(a) && a > 0)) {
    fail("config", `alpha ${a} must be a positive number`, "e.g. 1: probability ∝ 1/p̂");
  }
}

/** Episodes of a Q-learning view: `episode[i]` of each transition, and each episode's [start, end). */
export function viewEpisodes(
  dataset: Pick<OfflineDataset, "n" | "obsDim" | "observations" | "nextObservations" | "terminals">,
): { readonly episode: Int32Array; readonly starts: Int32Array; readonly ends: Int32Array } {
  const { n, obsDim: d, observations: obs, nextObservations: next, terminals } = dataset;
  const episode = new Int32Array(n);
  const starts: number[] = [0], ends: number[] = [];
  for (let i = 0; i < n; i++) {
    episode[i] = starts.length - 1;
    let last = i === n - 1 || terminals[i] !== 0;
    for (let k = 0; !last && k < d; k++) last = next[i * d + k] !== obs[(i + 1) * d + k];
    if (last) {
      ends.push(i + 1);
      if (i < n - 1) starts.push(i + 1);
    }
  }
  return { episode, starts: Int32Array.from(starts), ends: Int32Array.from(ends) };
}

/** Undiscounted return-to-go of every transition and the return of its episode. */
export function returnsToGo(
  dataset: Pick<
    OfflineDataset,
    "n" | "obsDim" | "observations" | "nextObservations" | "terminals" | "rewards"
  >,
): { readonly returnToGo: Float64Array; readonly episodeReturn: Float64Array } {
  const { starts, ends } = viewEpisodes(dataset);
  const returnToGo = new Float64Array(dataset.n), episodeReturn = new Float64Array(dataset.n);
  for (let e = 0; e < starts.length; e++) {
    let sum = 0;
    for (let i = ends[e] - 1; i >= starts[e]; i--) returnToGo[i] = sum += dataset.rewards[i];
    for (let i = starts[e]; i < ends[e]; i++) episodeReturn[i] = sum;
  }
  return { returnToGo, episodeReturn };
}

/** Rows of the `quality` subset: N drawn uniformly from the states of the best episodes. */
export function selectQuality(
  dataset: Parameters<typeof returnsToGo>[0],
  size: number,
  fraction: number,
  seed: number,
): Int32Array {
  const { starts, ends } = viewEpisodes(dataset);
  const returns = Array.from(starts, (s, e) => {
    let sum = 0;
    for (let i = s; i < ends[e]; i++) sum += dataset.rewards[i];
    return sum;
  });
  const order = returns.map((_, e) => e).sort((a, b) => returns[b] - returns[a] || a - b);
  const want = Math.max(size, Math.ceil(fraction * dataset.n));
  const pool: number[] = [];
  for (const e of order) {
    if (pool.length >= want) break;
    for (let i = starts[e]; i < ends[e]; i++) pool.push(i);
  }
  const pick = new Rng(deriveSeed(seed, "subset", "quality")).sampleWithoutReplacement(pool.length, size);
  return pick.map((p) => pool[p]);
}

/** Rows of the `diverse` subset: N without replacement, probability ∝ exp(−α·logDensity). */
export function selectInverseDensity(
  logDensity: ArrayLike<number>,
  size: number,
  alpha: number,
  seed: number,
): Int32Array {
  const rng = new Rng(deriveSeed(seed, "subset", "diverse"));
  const n = logDensity.length;
  // Exponential race: E_i / w_i with w_i = p̂_i^(−α); its log is log E_i + α log p̂_i.
  const keys = new Float64Array(n);
  for (let i = 0; i < n; i++) keys[i] = Math.log(-Math.log(1 - rng.uniform())) + alpha * logDensity[i];
  const order = Int32Array.from({ length: n }, (_, i) => i).sort((a, b) => keys[a] - keys[b] || a - b);
  return order.slice(0, size);
}

/** Squared Euclidean distance between rows a and b of `[*, d]` arrays. */
function dist2(x: Float32Array, a: number, y: Float32Array, b: number, d: number): number {
  let s = 0;
  for (let k = 0; k < d; k++) {
    const t = x[a * d + k] - y[b * d + k];
    s += t * t;
  }
  return s;
}

/** Rows of the `kcenter` subset: greedy farthest-point selection from a seeded first row. */
export function selectKCenter(z: Float32Array, n: number, d: number, size: number, seed: number): Int32Array {
  const chosen = new Int32Array(size);
  const near = new Float64Array(n).fill(Infinity);
  chosen[0] = new Rng(deriveSeed(seed, "subset", "kcenter")).int(n);
  for (let c = 0; c < size; c++) {
    if (c > 0) {
      let best = -1, far = -1;
      for (let i = 0; i < n; i++) if (near[i] > far) [far, best] = [near[i], i];
      chosen[c] = best;
    }
    const j = chosen[c];
    for (let i = 0; i < n; i++) {
      const v = dist2(z, i, z, j, d);
      if (v < near[i]) near[i] = v;
    }
  }
  return chosen;
}

/** Coverage of the data `z` (`[n, d]`) by its rows `rows`: the largest and the mean nearest distance. */
export function coverage(
  z: Float32Array,
  n: number,
  d: number,
  rows: ArrayLike<number>,
): { readonly radius: number; readonly meanDistance: number } {
  let radius = 0, total = 0;
  for (let i = 0; i < n; i++) {
    let best = Infinity;
    for (let r = 0; r < rows.length; r++) {
      const v = dist2(z, i, z, rows[r], d);
      if (v < best) best = v;
    }
    const dist = Math.sqrt(best);
    total += dist;
    if (dist > radius) radius = dist;
  }
  return { radius, meanDistance: total / n };
}

/**
 * The subset of `config` from the dataset (raw states, normalized `z`), the density stage's
 * log-densities and, for teacher targets, the teacher. Pure; deterministic for its arguments.
 */
export function selectSubset(
  dataset: OfflineDataset,
  density: Pick<StateDensity, "n" | "logDensity">,
  config: SubsetConfig,
  teacher?: TeacherArtifact,
  z: Float32Array = normalizeStates(dataset.observations, dataset),
): Subset {
  validateSubsetConfig(config);
  const { n, obsDim: d, actDim: m } = dataset;
  if (config.size > n) {
    fail(
      "config",
      `a subset of ${config.size} states from a dataset of ${n} transitions`,
      "choose a smaller --size",
    );
  }
  if (density.n !== n) {
    fail("input", `the densities cover ${density.n} states, the dataset has ${n}`, "recompute the densities");
  }
  let rows: Int32Array;
  switch (config.kind) {
    case "random":
      rows = randomRealSet(dataset, config.size, config.seed, z).indices;
      break;
    case "quality":
      rows = selectQuality(dataset, config.size, config.qualityFraction!, config.seed);
      break;
    case "diverse":
      rows = selectInverseDensity(density.logDensity, config.size, config.alpha!, config.seed);
      break;
    case "kcenter":
      rows = selectKCenter(z, n, d, config.size, config.seed);
      break;
  }
  const size = rows.length;
  const states = new Float32Array(size * d), rawStates = new Float32Array(size * d);
  let actions = new Float32Array(size * m);
  rows.forEach((row, r) => {
    states.set(z.subarray(row * d, (row + 1) * d), r * d);
    rawStates.set(dataset.observations.subarray(row * d, (row + 1) * d), r * d);
    actions.set(dataset.actions.subarray(row * m, (row + 1) * m), r * m);
  });
  if (config.targets === "teacher") {
    if (!teacher) fail("internal", "teacher targets were asked for without a teacher");
    const t = teacherFromArtifact(teacher);
    try {
      actions = tf.tidy(() => {
        const s = t.normalize(tf.tensor2d(rawStates, [size, d]));
        return Float32Array.from(t.act(s, "deterministic").dataSync());
      });
    } finally {
      t.dispose();
    }
  }
  const { returnToGo, episodeReturn } = returnsToGo(dataset);
  let logp = 0, rtg = 0, ret = 0;
  for (const row of rows) {
    logp += density.logDensity[row];
    rtg += returnToGo[row];
    ret += episodeReturn[row];
  }
  const cover = coverage(z, n, d, rows);
  return {
    env: dataset.env,
    size,
    obsDim: d,
    actDim: m,
    states,
    rawStates,
    actions,
    stateMean: dataset.stateMean,
    stateStd: dataset.stateStd,
    kind: config.kind,
    targets: config.targets,
    indices: rows,
    measures: {
      meanLogDensity: logp / size,
      coverageRadius: cover.radius,
      meanCoverageDistance: cover.meanDistance,
      meanReturnToGo: rtg / size,
      meanEpisodeReturn: ret / size,
    },
  };
}

/** The subset stage: {@link selectSubset} on the load, density and (for teacher targets) teacher stages. */
export const subsetStage: Stage<
  { dataset: OfflineDataset; density: StateDensity; teacher?: TeacherArtifact },
  SubsetConfig,
  Subset
> = defineStage<
  { dataset: OfflineDataset; density: StateDensity; teacher?: TeacherArtifact },
  SubsetConfig,
  Subset
>({
  name: "subset",
  version: "1",
  validate: validateSubsetConfig,
  compute: ({ dataset, density, teacher }, config, ctx) => {
    const subset = selectSubset(dataset, density, config, teacher);
    for (const [name, value] of Object.entries(subset.measures)) ctx.metric(name, value);
    return subset;
  },
});
