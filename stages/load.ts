/**
 * The `load` stage: an offline dataset in D4RL layout, validated, as the Q-learning view the later
 * stages train on, with the state normalization statistics (mean, std + 1e-3) and per-episode returns.
 *
 * Two steps, so that effects stay outside the cached computation:
 * - `locateDataset` (effectful, never cached) finds the file — the embedded dataset, a D4RL alias
 *   under `data/d4rl/` (downloading it once if missing), or a path — and hashes it;
 * - `loadStage` (cached) reads and validates it. Its config carries the file's sha256, so the cache
 *   follows the file's content, not its name.
 * @module
 */

import { ENV_NAMES, ENV_SPECS, type EnvName, normalizedScore } from "../envs/specs.ts";
import {
  episodeReturns,
  loadD4rlDataset,
  observationStats,
  type QLearningView,
  qlearningView,
  resolveD4rlAlias,
} from "../datasets/d4rl.ts";
import { download, verifyFile } from "../datasets/download.ts";
import { fail } from "../core/errors.ts";
import type { ProgressFactory } from "../core/progress.ts";
import { defineStage, type Stage } from "../core/stage.ts";

/** The dataset shipped in the repository: Hopper medium-replay style, made by `deno task collect`. */
export const EMBEDDED_DATASET = {
  name: "embedded",
  file: "data/embedded/hopper_medium_replay-obd.hdf5",
  env: "hopper" as EnvName,
} as const;

/** Where D4RL files are looked for and downloaded to. */
export const D4RL_DIR = "data/d4rl";

/** A dataset file found on disk. */
export interface LocatedDataset {
  /** What the user asked for (`embedded`, `hopper-m-r`, a path). */
  readonly name: string;
  /** Path of the HDF5 file, relative to the project root. */
  readonly file: string;
  /** Hex sha256 of the file. */
  readonly sha256: string;
  /** Known from the alias; for a path, decided when the file is read. */
  readonly env?: EnvName;
}

/**
 * Finds (and if needed downloads) the file of `name`: `embedded`, a D4RL alias such as `hopper-m-r`,
 * or a path to an `.hdf5` file in D4RL layout.
 */
export async function locateDataset(name: string, progress: ProgressFactory): Promise<LocatedDataset> {
  if (name === EMBEDDED_DATASET.name) {
    const sha256 = await verifyFile({ url: "(shipped in the repository)", path: EMBEDDED_DATASET.file })
      .catch(() =>
        fail(
          "input",
          `the embedded dataset ${EMBEDDED_DATASET.file} is missing`,
          "restore it with `git checkout data/embedded`",
        )
      );
    return { name, file: EMBEDDED_DATASET.file, sha256, env: EMBEDDED_DATASET.env };
  }
  if (/\.(hdf5|h5)$/i.test(name)) {
    const exists = await Deno.stat(name).then((s) => s.isFile, () => false);
    if (!exists) {
      fail(
        "input",
        `dataset file ${name} does not exist`,
        "give a path to an HDF5 file in D4RL layout, or a D4RL alias",
      );
    }
    const sha256 = await verifyFile({ url: "(local file)", path: name });
    return { name, file: name, sha256 };
  }
  const info = resolveD4rlAlias(name);
  const remote = {
    url: info.url,
    path: `${D4RL_DIR}/${info.fileName}`,
    bytes: info.sizeBytes,
    sha256: info.sha256,
  };
  const present = await Deno.stat(remote.path).then(() => true, () => false);
  const sha256 = present ? await verifyFile(remote) : await download(remote, progress);
  return { name, file: remote.path, sha256, env: info.env };
}

/** Config of the load stage. */
export interface LoadConfig {
  /** The file, relative to the project root. */
  readonly file: string;
  /** Its sha256 (from `locateDataset`): part of the cache key. */
  readonly sha256: string;
  /** The environment, when known in advance; otherwise read from the file. */
  readonly env?: EnvName;
  /** Fewest transitions accepted: distillation draws minibatches of real states. */
  readonly minTransitions: number;
}

/**
 * An offline dataset ready for training: D4RL's Q-learning view (raw, unnormalized states) plus where
 * it came from and its statistics.
 */
export interface OfflineDataset extends Omit<QLearningView, "rows" | "nextSource"> {
  /** The environment the data was recorded in. */
  readonly env: EnvName;
  /** Path of the source HDF5 file. */
  readonly file: string;
  /** Hex sha256 of the source file. */
  readonly sha256: string;
  /** Per-dimension state mean and std + 1e-3 over the view's observations. */
  readonly stateMean: Float32Array;
  /** Per-dimension state std + 1e-3, length obsDim. */
  readonly stateStd: Float32Array;
  /** Undiscounted return and length of every episode in the file. */
  readonly episodeReturns: Float64Array;
  /** Length (transitions) of every episode in the file. */
  readonly episodeLengths: Int32Array;
}

/**
 * (s − stateMean) / stateStd row by row, each operation rounded to float32 as NumPy and PyTorch
 * compute it on float32 arrays. The one normalization of states into the space the networks take.
 */
export function normalizeStates(
  raw: Float32Array,
  stats: Pick<OfflineDataset, "stateMean" | "stateStd">,
): Float32Array {
  const { stateMean: mean, stateStd: std } = stats;
  const d = mean.length;
  const out = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = Math.fround(Math.fround(raw[i] - mean[i % d]) / std[i % d]);
  return out;
}

/** D4RL normalized score of the dataset's average episode (the bar a learned policy should clear). */
export function datasetMeanScore(dataset: Pick<OfflineDataset, "env" | "episodeReturns">): number {
  const returns = dataset.episodeReturns;
  return normalizedScore(dataset.env, returns.reduce((a, b) => a + b, 0) / Math.max(1, returns.length));
}

/** Decides the environment of a file: the expected one, else its `env` attribute, else its name. */
function environmentOf(
  config: LoadConfig,
  attrs: Readonly<Record<string, unknown>>,
  obsDim: number,
): EnvName {
  if (config.env) return config.env;
  const attr = typeof attrs.env === "string" ? attrs.env.toLowerCase() : undefined;
  const byAttr = ENV_NAMES.find((e) => e === attr);
  if (byAttr) return byAttr;
  const byName = ENV_NAMES.find((e) => config.file.toLowerCase().includes(e));
  if (byName) return byName;
  const byDims = ENV_NAMES.filter((e) => ENV_SPECS[e].obsDim === obsDim);
  if (byDims.length === 1) return byDims[0];
  return fail(
    "input",
    `cannot tell the environment of ${config.file} (no env attribute, no environment in its name, ${obsDim}-dimensional states)`,
    `rename the file to contain one of ${ENV_NAMES.join(", ")}`,
  );
}

/** The load stage. */
export const loadStage: Stage<Record<string, never>, LoadConfig, OfflineDataset> = defineStage<
  Record<string, never>,
  LoadConfig,
  OfflineDataset
>({
  name: "load",
  version: "1",
  compute: async (_inputs, config, ctx) => {
    const data = await loadD4rlDataset(config.file, {
      env: config.env,
      minTransitions: config.minTransitions,
    });
    const env = environmentOf(config, data.attrs, data.obsDim);
    if (data.obsDim !== ENV_SPECS[env].obsDim || data.actDim !== ENV_SPECS[env].actDim) {
      fail(
        "input",
        `${config.file} has ${data.obsDim}-dimensional states and ${data.actDim}-dimensional actions, but ${env} has ${
          ENV_SPECS[env].obsDim
        } and ${ENV_SPECS[env].actDim}`,
        "check that the file belongs to this environment",
      );
    }
    const view = qlearningView(data);
    if (view.n < config.minTransitions) {
      fail(
        "input",
        `${config.file} has ${view.n} usable transitions, fewer than the ${config.minTransitions} required`,
        "use a larger dataset or lower load.minTransitions",
      );
    }
    const stats = observationStats(view.observations, view.obsDim);
    const episodes = episodeReturns(data);
    const meanReturn = episodes.returns.reduce((a, b) => a + b, 0) / Math.max(1, episodes.returns.length);
    ctx.metric("transitions", view.n);
    ctx.metric("episodes", episodes.returns.length);
    ctx.metric("meanEpisodeReturn", meanReturn);
    return {
      env,
      file: config.file,
      sha256: config.sha256,
      n: view.n,
      obsDim: view.obsDim,
      actDim: view.actDim,
      observations: view.observations,
      actions: view.actions,
      rewards: view.rewards,
      nextObservations: view.nextObservations,
      terminals: view.terminals,
      stateMean: Float32Array.from(stats.mean),
      stateStd: Float32Array.from(stats.std),
      episodeReturns: episodes.returns,
      episodeLengths: episodes.lengths,
    };
  },
});
