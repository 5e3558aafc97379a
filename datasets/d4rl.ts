/**
 * D4RL facts (which datasets exist, where they live, what they look like) and pure views of a loaded
 * dataset: validation, D4RL's Q-learning transitions, observation statistics and episode returns.
 * The only I/O goes through `hdf5.ts` ({@link loadD4rlDataset}).
 * @module
 */

import { fail } from "../core/errors.ts";
import { type AttrValue, type D4rlArrays, type H5Array, type RawD4rlFile, readD4rlFile } from "./hdf5.ts";

// ---------------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------------

/** The MuJoCo locomotion environments we use. */
export type D4rlEnv = "hopper" | "halfcheetah" | "walker2d";

/** The dataset kinds, spelled as in D4RL's file names. */
export type D4rlKind = "medium_replay" | "medium" | "medium_expert" | "random" | "expert";

/** Observation and action widths of each environment (Gym MuJoCo v2/v3). */
export const D4RL_ENV_DIMS: Readonly<Record<D4rlEnv, { readonly obsDim: number; readonly actDim: number }>> =
  {
    hopper: { obsDim: 11, actDim: 3 },
    halfcheetah: { obsDim: 17, actDim: 6 },
    walker2d: { obsDim: 17, actDim: 6 },
  };

/** Where D4RL publishes the gym-mujoco v2 datasets. */
export const D4RL_BASE_URL = "http://rail.eecs.berkeley.edu/datasets/offline_rl/gym_mujoco_v2/";

/** One published D4RL dataset. Size, sha256 and sample count are given only where we have measured them. */
export interface D4rlDatasetInfo {
  /** Short alias, e.g. `hopper-m-r`. */
  readonly alias: string;
  /** Long alias, e.g. `hopper-medium-replay` (also accepted with D4RL's `-v2` suffix). */
  readonly longAlias: string;
  /** The environment. */
  readonly env: D4rlEnv;
  /** The dataset kind. */
  readonly kind: D4rlKind;
  /** e.g. `hopper_medium_replay-v2.hdf5` */
  readonly fileName: string;
  /** Download address. */
  readonly url: string;
  /** Observation width. */
  readonly obsDim: number;
  /** Action width. */
  readonly actDim: number;
  /** Exact file size in bytes, when known. */
  readonly sizeBytes?: number;
  /** Lower-case hex sha256 of the file, when known. */
  readonly sha256?: string;
  /** Number of rows (transitions) in the file, when known. */
  readonly samples?: number;
}

const KIND_ALIASES: ReadonlyArray<readonly [short: string, long: string, kind: D4rlKind]> = [
  ["m-r", "medium-replay", "medium_replay"],
  ["m", "medium", "medium"],
  ["m-e", "medium-expert", "medium_expert"],
  ["r", "random", "random"],
  ["e", "expert", "expert"],
];

const KNOWN_FILES: Readonly<Record<string, Pick<D4rlDatasetInfo, "sizeBytes" | "sha256" | "samples">>> = {
  "hopper_medium_replay-v2.hdf5": {
    sizeBytes: 75_854_457,
    sha256: "e121c5f7c9857a307baa9edc6a2c3b48e85fedb9ac316ecddd0f48ca7ef4e39b",
    samples: 402_000,
  },
  "walker2d_medium_replay-v2.hdf5": {
    sizeBytes: 86_323_963,
    sha256: "e75de96a4f77acf7d4e0d6fdf0d7ccb177c26c44bb4388e4fd99f543ccfa18db",
  },
};

/** Every dataset we know, 3 environments × 5 kinds, in a stable order. */
export const D4RL_DATASETS: readonly D4rlDatasetInfo[] = (["hopper", "halfcheetah", "walker2d"] as const)
  .flatMap((env) =>
    KIND_ALIASES.map(([short, long, kind]): D4rlDatasetInfo => {
      const fileName = `${env}_${kind}-v2.hdf5`;
      return {
        alias: `${env}-${short}`,
        longAlias: `${env}-${long}`,
        env,
        kind,
        fileName,
        url: D4RL_BASE_URL + fileName,
        ...D4RL_ENV_DIMS[env],
        ...KNOWN_FILES[fileName],
      };
    })
  );

/** The short aliases, for help texts and error messages. */
export function d4rlAliases(): string[] {
  return D4RL_DATASETS.map((d) => d.alias);
}

/**
 * Finds a dataset by short alias (`hopper-m-r`), long alias (`hopper-medium-replay`) or D4RL's
 * environment id (`hopper-medium-replay-v2`), ignoring case and surrounding spaces. An unknown name
 * fails with kind "config", listing the valid aliases.
 */
export function resolveD4rlAlias(name: string): D4rlDatasetInfo {
  const wanted = name.trim().toLowerCase().replace(/-v2$/, "");
  const found = D4RL_DATASETS.find((d) => d.alias === wanted || d.longAlias === wanted);
  if (found === undefined) {
    fail(
      "config",
      `unknown D4RL dataset '${name}'; valid aliases: ${d4rlAliases().join(", ")}`,
      "use one of the listed aliases (long forms such as hopper-medium-replay work too)",
    );
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/** A validated D4RL dataset in memory. */
export interface D4rlDataset extends D4rlArrays {
  /** Where it was read from, for messages. */
  readonly path: string;
  /**
   * True when the file has no `timeouts` (D4RL's v0/v1 files): read as no timeouts at all, so
   * episodes end only at terminals.
   */
  readonly timeoutsAbsent?: true;
  /** The file's root attributes. */
  readonly attrs: Readonly<Record<string, AttrValue>>;
}

/** Options for {@link validateD4rl}. */
export interface ValidateOptions {
  /** When given, observation and action widths must match this environment's. */
  readonly env?: D4rlEnv;
  /** Fewest rows accepted (default 1). */
  readonly minTransitions?: number;
  /** How far actions may stray outside [−1, 1] before the file is rejected (default 1e-4). */
  readonly actionTolerance?: number;
}

const FLOAT_DTYPES = ["float32", "float64"];
const FLAG_DTYPES = ["bool", "int8", "uint8"];

/**
 * Checks a file read by `readD4rlFile` against the D4RL layout and returns it as a {@link D4rlDataset}:
 * required keys present; float / boolean dtypes; `observations`, `actions`, `next_observations`
 * two-dimensional and the rest one-dimensional, all with the same number of rows; widths matching
 * `options.env`; at least `options.minTransitions` rows; every float finite; actions within [−1, 1]
 * up to `options.actionTolerance`; flags 0 or 1. Fails with kind "numeric" for a non-finite value and
 * "input" for anything else, naming the file, the key and the first offending index.
 */
export function validateD4rl(raw: RawD4rlFile, options: ValidateOptions = {}): D4rlDataset {
  const { path, datasets } = raw;
  const { env, minTransitions = 1, actionTolerance = 1e-4 } = options;
  const layoutHint = "the file does not follow the D4RL layout; regenerate it or download the original";

  // `timeouts` is optional: D4RL's v0/v1 files have none, and D4RL reads them (no timeouts = none).
  const required = ["observations", "actions", "rewards", "terminals"] as const;
  const missing = required.filter((key) => datasets[key] === undefined);
  if (missing.length > 0) {
    fail(
      "input",
      `${path}: missing D4RL key${missing.length > 1 ? "s" : ""} ${
        missing.map((k) => `'${k}'`).join(", ")
      } (found: ${raw.keys.join(", ") || "nothing"})`,
      layoutHint,
    );
  }
  const observations = datasets.observations!, actions = datasets.actions!, rewards = datasets.rewards!;
  const terminals = datasets.terminals!;
  const timeoutsAbsent = datasets.timeouts === undefined;
  const timeouts = datasets.timeouts ??
    { data: new Uint8Array(observations.shape[0] ?? 0), shape: [observations.shape[0] ?? 0], dtype: "bool" };
  const next = datasets.next_observations;

  const checkDtype = (key: string, array: H5Array<Float32Array | Uint8Array>, allowed: string[]) => {
    if (!allowed.includes(array.dtype)) {
      fail(
        "input",
        `${path}: '${key}' has dtype ${array.dtype}; expected ${allowed.join(" or ")}`,
        layoutHint,
      );
    }
  };
  for (
    const [key, array] of [["observations", observations], ["actions", actions], [
      "rewards",
      rewards,
    ]] as const
  ) {
    checkDtype(key, array, FLOAT_DTYPES);
  }
  if (next) checkDtype("next_observations", next, FLOAT_DTYPES);
  checkDtype("terminals", terminals, FLAG_DTYPES);
  checkDtype("timeouts", timeouts, FLAG_DTYPES);

  const checkRank = (key: string, array: H5Array<Float32Array | Uint8Array>, rank: number) => {
    const product = array.shape.reduce((a, b) => a * b, 1);
    if (array.shape.length !== rank || product !== array.data.length) {
      fail(
        "input",
        `${path}: '${key}' has shape [${array.shape.join(", ")}]; expected ${
          rank === 2 ? "[N, dim]" : "[N]"
        }`,
        layoutHint,
      );
    }
  };
  checkRank("observations", observations, 2);
  checkRank("actions", actions, 2);
  if (next) checkRank("next_observations", next, 2);
  for (
    const [key, array] of [["rewards", rewards], ["terminals", terminals], ["timeouts", timeouts]] as const
  ) {
    checkRank(key, array, 1);
  }

  const n = observations.shape[0];
  const rows: Array<[string, H5Array<Float32Array | Uint8Array> | undefined]> = [
    ["actions", actions],
    ["rewards", rewards],
    ["terminals", terminals],
    ["timeouts", timeouts],
    ["next_observations", next],
  ];
  for (const [key, array] of rows) {
    if (array && array.shape[0] !== n) {
      fail("input", `${path}: '${key}' has ${array.shape[0]} rows but 'observations' has ${n}`, layoutHint);
    }
  }
  const obsDim = observations.shape[1], actDim = actions.shape[1];
  if (next && next.shape[1] !== obsDim) {
    fail("input", `${path}: 'next_observations' has width ${next.shape[1]} but 'observations' has ${obsDim}`);
  }
  if (env !== undefined) {
    const want = D4RL_ENV_DIMS[env];
    if (obsDim !== want.obsDim || actDim !== want.actDim) {
      fail(
        "input",
        `${path}: observation/action widths ${obsDim}/${actDim} do not match ${env} (${want.obsDim}/${want.actDim})`,
        "check that the file belongs to this environment",
      );
    }
  }
  if (n < minTransitions) {
    fail("input", `${path}: only ${n} transitions; at least ${minTransitions} are required`, layoutHint);
  }

  const floats = [["observations", observations, obsDim], ["actions", actions, actDim], [
    "rewards",
    rewards,
    1,
  ]] as Array<[string, H5Array<Float32Array>, number]>;
  if (next) floats.push(["next_observations", next, obsDim]);
  for (const [key, array, width] of floats) {
    const bad = array.data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      fail(
        "numeric",
        `${path}: '${key}' holds ${array.data[bad]} at ${locate(bad, width)}`,
        "the file is corrupt or was produced by a diverged run; regenerate or re-download it",
      );
    }
  }

  let worst = 0, worstAt = -1;
  for (let i = 0; i < actions.data.length; i++) {
    const magnitude = Math.abs(actions.data[i]);
    if (magnitude > worst) [worst, worstAt] = [magnitude, i];
  }
  if (worst > 1 + actionTolerance) {
    fail(
      "input",
      `${path}: actions leave [-1, 1]: max |action| = ${worst} at ${
        locate(worstAt, actDim)
      } (tolerance ${actionTolerance})`,
      "D4RL actions are clipped to [-1, 1]; clip or rescale them when producing the file",
    );
  }
  for (const [key, array] of [["terminals", terminals], ["timeouts", timeouts]] as const) {
    const bad = array.data.findIndex((v) => v > 1);
    if (bad >= 0) {
      fail("input", `${path}: '${key}' holds ${array.data[bad]} at row ${bad}; expected 0 or 1`, layoutHint);
    }
  }

  return {
    path,
    attrs: raw.attrs,
    n,
    obsDim,
    actDim,
    observations: observations.data,
    actions: actions.data,
    rewards: rewards.data,
    terminals: terminals.data,
    timeouts: timeouts.data,
    ...(next ? { nextObservations: next.data } : {}),
    ...(timeoutsAbsent ? { timeoutsAbsent: true as const } : {}),
  };
}

/** "row r, dim d (element i)" for a flat index into a row-major matrix of the given width. */
function locate(flatIndex: number, width: number): string {
  const row = Math.floor(flatIndex / width);
  return width === 1 ? `row ${row}` : `row ${row}, dim ${flatIndex % width} (element ${flatIndex})`;
}

/** Reads `path` with `readD4rlFile` and validates it with {@link validateD4rl}. */
export async function loadD4rlDataset(path: string, options: ValidateOptions = {}): Promise<D4rlDataset> {
  return validateD4rl(await readD4rlFile(path), options);
}

// ---------------------------------------------------------------------------------------------
// Q-learning view
// ---------------------------------------------------------------------------------------------

/** Transitions `(s, a, r, s', done)` for off-policy learning, gathered from a dataset's rows. */
export interface QLearningView {
  /** Number of transitions. */
  readonly n: number;
  /** Observation width. */
  readonly obsDim: number;
  /** Action width. */
  readonly actDim: number;
  /** `[n, obsDim]` */
  readonly observations: Float32Array;
  /** `[n, actDim]` */
  readonly actions: Float32Array;
  /** `[n]` */
  readonly rewards: Float32Array;
  /** `[n, obsDim]` */
  readonly nextObservations: Float32Array;
  /** `[n]`, 0/1: `s'` is terminal, so do not bootstrap from it. */
  readonly terminals: Uint8Array;
  /** `[n]`: the dataset row each transition comes from. */
  readonly rows: Int32Array;
  /** Whether `s'` came from the file's `next_observations` or was derived from the following row. */
  readonly nextSource: "stored" | "derived";
}

/**
 * Builds the Q-learning transitions of a dataset.
 *
 * With stored `next_observations` (and `useStored` left true) every row is a transition with its own
 * next observation and terminal flag. Otherwise the next observations are derived exactly as D4RL's
 * `qlearning_dataset` (d4rl/__init__.py, `terminate_on_end=False`) does with v2 datasets: for each row
 * `i < n − 1`, if `timeouts[i]` (D4RL's `final_timestep`) the row is skipped — even when it is also
 * terminal — otherwise `(obs[i], act[i], rew[i], obs[i+1], terminals[i])` is kept; the last row is
 * always dropped. Terminal rows are kept: their `s'` is the next row (the next episode's start), which
 * the terminal flag masks. Note that D4RL's function never uses stored `next_observations`, so on files
 * that have them it yields fewer transitions than the stored view; pass `useStored: false` to match it.
 *
 * Fails with "input" when no transition remains.
 */
export function qlearningView(
  data: D4rlArrays,
  options: { readonly useStored?: boolean } = {},
): QLearningView {
  const { n, obsDim, actDim } = data;
  const stored = (options.useStored ?? true) ? data.nextObservations : undefined;
  let rows: Int32Array;
  if (stored) {
    rows = Int32Array.from({ length: n }, (_, i) => i);
  } else {
    const kept: number[] = [];
    for (let i = 0; i < n - 1; i++) if (!data.timeouts[i]) kept.push(i);
    rows = Int32Array.from(kept);
  }
  if (rows.length === 0) {
    fail(
      "input",
      `the Q-learning view of a ${n}-row dataset is empty (every row is a timeout or the last row)`,
      "use a dataset with complete transitions",
    );
  }
  const m = rows.length;
  const view = {
    n: m,
    obsDim,
    actDim,
    observations: new Float32Array(m * obsDim),
    actions: new Float32Array(m * actDim),
    rewards: new Float32Array(m),
    nextObservations: new Float32Array(m * obsDim),
    terminals: new Uint8Array(m),
    rows,
    nextSource: stored ? "stored" as const : "derived" as const,
  };
  for (let j = 0; j < m; j++) {
    const i = rows[j];
    view.observations.set(data.observations.subarray(i * obsDim, (i + 1) * obsDim), j * obsDim);
    view.actions.set(data.actions.subarray(i * actDim, (i + 1) * actDim), j * actDim);
    view.rewards[j] = data.rewards[i];
    view.terminals[j] = data.terminals[i];
    const source = stored ?? data.observations;
    const from = stored ? i : i + 1;
    view.nextObservations.set(source.subarray(from * obsDim, (from + 1) * obsDim), j * obsDim);
  }
  return view;
}

// ---------------------------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------------------------

/** Per-dimension observation statistics for normalising inputs. */
export interface ObservationStats {
  /** Number of observations they were computed from. */
  readonly count: number;
  /** Mean of each dimension. */
  readonly mean: Float64Array;
  /** Population standard deviation (numpy's default, ddof = 0) of each dimension, plus `epsilon`. */
  readonly std: Float64Array;
  /** The constant added to `std`. */
  readonly epsilon: number;
}

/**
 * Mean and standard deviation of each column of a row-major `[count, dim]` matrix, with `epsilon`
 * (default 1e-3, as in TD3+BC and the behavior-distillation papers) added to the standard deviation so
 * that constant dimensions do not divide by zero. Computed in float64 in two passes. TD3+BC computes
 * them over the Q-learning view's observations; pass `qlearningView(d).observations` to match.
 * Fails with "numeric" on an empty matrix or a non-finite result.
 */
export function observationStats(observations: Float32Array, dim: number, epsilon = 1e-3): ObservationStats {
  const count = Math.floor(observations.length / dim);
  if (count === 0 || count * dim !== observations.length) {
    fail(
      "numeric",
      `cannot compute observation statistics of ${observations.length} values in rows of ${dim}`,
    );
  }
  const mean = new Float64Array(dim);
  for (let i = 0; i < count; i++) for (let d = 0; d < dim; d++) mean[d] += observations[i * dim + d];
  for (let d = 0; d < dim; d++) mean[d] /= count;
  const std = new Float64Array(dim);
  for (let i = 0; i < count; i++) {
    for (let d = 0; d < dim; d++) std[d] += (observations[i * dim + d] - mean[d]) ** 2;
  }
  for (let d = 0; d < dim; d++) {
    std[d] = Math.sqrt(std[d] / count) + epsilon;
    if (!Number.isFinite(mean[d]) || !Number.isFinite(std[d])) {
      fail(
        "numeric",
        `observation statistics of dimension ${d} are not finite (mean ${mean[d]}, std ${std[d]})`,
      );
    }
  }
  return { count, mean, std, epsilon };
}

/** Per-episode returns and lengths of a dataset. */
export interface EpisodeReturns {
  /** Undiscounted return of each episode, in dataset order. */
  readonly returns: Float64Array;
  /** Number of rows of each episode. */
  readonly lengths: Int32Array;
  /** Whether the last entry is a trailing episode that ends with neither a terminal nor a timeout. */
  readonly lastIncomplete: boolean;
}

/**
 * Splits the rows into episodes — one ends at each row whose `terminals` or `timeouts` flag is set, as
 * in D4RL's `sequence_dataset` — and sums their rewards (in float64). Unlike `sequence_dataset`, rows
 * after the last flag form one more, incomplete episode, which is counted and marked by
 * `lastIncomplete`: a partially logged episode still says something about the behaviour policy, and a
 * caller that wants only complete episodes can drop the last entry.
 */
export function episodeReturns(
  data: Pick<D4rlArrays, "n" | "rewards" | "terminals" | "timeouts">,
): EpisodeReturns {
  const returns: number[] = [], lengths: number[] = [];
  let sum = 0, length = 0;
  for (let i = 0; i < data.n; i++) {
    sum += data.rewards[i];
    length += 1;
    if (data.terminals[i] || data.timeouts[i]) {
      returns.push(sum);
      lengths.push(length);
      sum = 0;
      length = 0;
    }
  }
  const lastIncomplete = length > 0;
  if (lastIncomplete) {
    returns.push(sum);
    lengths.push(length);
  }
  return { returns: Float64Array.from(returns), lengths: Int32Array.from(lengths), lastIncomplete };
}
