/**
 * The synthetic set, the product of distillation: N (state, action) pairs with states in the
 * dataset's normalized space, and that normalization. Here: its validation, and sets of real pairs
 * (the Random selection baseline, and the initial set of every distillation, drawn the same way so
 * that a distillation of seed k starts from Random selection's set of repeat k).
 * @module
 */

import { fail } from "../core/errors.ts";
import { ALL_ENV_NAMES, ENV_SPECS, type EnvName } from "../envs/specs.ts";
import { deriveSeed, Rng } from "../numerics/random.ts";
import { normalizeStates, type OfflineDataset } from "./load.ts";

/** A synthetic set: states in the dataset's normalized space, actions, and that normalization. */
export interface SyntheticSet {
  /** Environment the set is for. */
  readonly env: EnvName;
  /** N, the number of (state, action) pairs. */
  readonly size: number;
  /** State dimension. */
  readonly obsDim: number;
  /** Action dimension. */
  readonly actDim: number;
  /** `[size, obsDim]`, normalized: (raw − stateMean) / stateStd. */
  readonly states: Float32Array;
  /** `[size, obsDim]`, the same states in the environment's raw observation space. */
  readonly rawStates: Float32Array;
  /** `[size, actDim]` */
  readonly actions: Float32Array;
  /** Per-dimension mean of the normalization, length obsDim. */
  readonly stateMean: Float32Array;
  /** Per-dimension std of the normalization, length obsDim. */
  readonly stateStd: Float32Array;
}

/**
 * Refuses a set that cannot be evaluated, with an `input` error naming what is wrong: an unknown
 * environment, no pairs, dimensions that do not fit the environment (or `expected`), arrays of the
 * wrong length, a non-finite value, a non-positive state std. Cheap (one pass), so it runs before
 * every evaluation: a NaN set would otherwise train NaN students whose rollouts look like a bad score.
 */
export function validateSyntheticSet(
  set: SyntheticSet,
  expected?: {
    readonly env?: EnvName;
    readonly obsDim?: number;
    readonly actDim?: number;
    readonly what?: string;
  },
): void {
  const what = expected?.what ?? "the synthetic set";
  if (!(ALL_ENV_NAMES as readonly string[]).includes(set.env)) {
    fail(
      "input",
      `${what} is for an unknown environment "${set.env}"`,
      `evaluate sets of ${ALL_ENV_NAMES.join(", ")}`,
    );
  }
  if (expected?.env !== undefined && expected.env !== set.env) {
    fail(
      "input",
      `${what} is for ${set.env}, but the dataset is ${expected.env}`,
      "evaluate a set distilled from this dataset's environment",
    );
  }
  if (!Number.isInteger(set.size) || set.size < 1) {
    fail(
      "input",
      `${what} is empty (${set.size} pairs)`,
      "distill a set with at least one pair (distill.synsetSize ≥ 1)",
    );
  }
  const spec = ENV_SPECS[set.env];
  const obsDim = expected?.obsDim ?? spec.obsDim, actDim = expected?.actDim ?? spec.actDim;
  if (set.obsDim !== obsDim || set.actDim !== actDim) {
    fail(
      "input",
      `${what} has ${set.obsDim}-dimensional states and ${set.actDim}-dimensional actions, but ${set.env} has ${obsDim} and ${actDim}`,
      "evaluate the set in the environment it was distilled for",
    );
  }
  const lengths: [string, ArrayLike<number>, number][] = [
    ["states", set.states, set.size * obsDim],
    ["actions", set.actions, set.size * actDim],
    ["stateMean", set.stateMean, obsDim],
    ["stateStd", set.stateStd, obsDim],
  ];
  for (const [name, array, length] of lengths) {
    if (array.length !== length) {
      fail(
        "input",
        `${what}: ${name} holds ${array.length} values, expected ${length}`,
        "the set is corrupt; distill it again",
      );
    }
  }
  const checkFinite = (name: string, array: ArrayLike<number>, width: number) => {
    for (let i = 0; i < array.length; i++) {
      if (!Number.isFinite(array[i])) {
        fail(
          "input",
          `${what} has a non-finite value (${array[i]}) in ${name}, row ${Math.floor(i / width)}, column ${
            i % width
          }`,
          "the distillation diverged or the set is corrupt; distill it again (lower distill.outerLr)",
        );
      }
    }
  };
  checkFinite("states", set.states, obsDim);
  checkFinite("actions", set.actions, actDim);
  checkFinite("stateMean", set.stateMean, obsDim);
  for (let j = 0; j < obsDim; j++) {
    if (!(set.stateStd[j] > 0) || !Number.isFinite(set.stateStd[j])) {
      fail(
        "input",
        `${what}: state std of dimension ${j} is ${set.stateStd[j]}, not a positive number`,
        "the set's normalization statistics are corrupt",
      );
    }
  }
}

/**
 * `size` distinct real (state, action) pairs drawn uniformly from the dataset for seed `seed`, in
 * the dataset's normalized space: Random selection's set of repeat `seed`, and the `random-real`
 * initial set of a distillation seeded `seed`. `normalized` may be passed when already computed.
 */
export function randomRealSet(
  dataset: OfflineDataset,
  size: number,
  seed: number,
  normalized?: Float32Array,
): SyntheticSet & { readonly indices: Int32Array } {
  if (!Number.isInteger(size) || size < 1 || size > dataset.n) {
    fail(
      "config",
      `random selection of ${size} pairs from a dataset of ${dataset.n}`,
      "choose a size between 1 and the number of transitions",
    );
  }
  const { obsDim: d, actDim: m } = dataset;
  const indices = new Rng(deriveSeed(seed, "real pairs")).sampleWithoutReplacement(dataset.n, size);
  const states = new Float32Array(size * d),
    rawStates = new Float32Array(size * d),
    actions = new Float32Array(size * m);
  indices.forEach((row, r) => {
    rawStates.set(dataset.observations.subarray(row * d, (row + 1) * d), r * d);
    actions.set(dataset.actions.subarray(row * m, (row + 1) * m), r * m);
    if (normalized) states.set(normalized.subarray(row * d, (row + 1) * d), r * d);
  });
  if (!normalized) states.set(normalizeStates(rawStates, dataset));
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
    indices,
  };
}
