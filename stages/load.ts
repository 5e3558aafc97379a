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

import {
  ALL_ENV_NAMES,
  ENV_NAMES,
  ENV_SPECS,
  envBody,
  type EnvName,
  envOfGymId,
  normalizedScore,
} from "../envs/specs.ts";
import {
  episodeReturns,
  loadD4rlDataset,
  observationStats,
  type QLearningView,
  qlearningView,
  resolveD4rlAlias,
  validateD4rl,
} from "../datasets/d4rl.ts";
import type { RawD4rlFile } from "../datasets/hdf5.ts";
import { fileSha256, verifyFile } from "../datasets/download.ts";
import {
  d4rlMirrors,
  d4rlSearchDirs,
  downloadFromMirrors,
  type EnvLookup,
  findFile,
  minariSearchDirs,
  processEnv,
  refuseUnreadable,
} from "../datasets/sources.ts";
import {
  minariFiles,
  type MinariMetadata,
  readMinariEpisodes,
  readMinariMetadata,
} from "../datasets/minari.ts";
import { fail } from "../core/errors.ts";
import type { ProgressFactory } from "../core/progress.ts";
import { defineStage, type Stage } from "../core/stage.ts";

/** The dataset shipped in the repository: Hopper medium-replay style, made by `deno task collect`. */
export const EMBEDDED_DATASET = {
  name: "embedded",
  file: "data/embedded/hopper_medium_replay-obd.hdf5",
  env: "hopper" as EnvName,
} as const;

/** Where D4RL files are looked for first and downloaded to. */
export const D4RL_DIR = "data/d4rl";

/** The prefix naming a Minari dataset id: `minari:mujoco/hopper/medium-v0`. */
export const MINARI_PREFIX = "minari:";

/** A dataset file found on disk. */
export interface LocatedDataset {
  /** What the user asked for (`embedded`, `hopper-m-r`, `minari:<id>`, a path). */
  readonly name: string;
  /** Path of the HDF5 file, relative to the project root or absolute. */
  readonly file: string;
  /** Hex sha256 of the file. */
  readonly sha256: string;
  /** Known from the alias or a Minari dataset's metadata; for a D4RL-layout path, decided when the file is read. */
  readonly env?: EnvName;
  /** Where it was found or fetched from, e.g. `~/.d4rl/datasets` or a mirror's URL. */
  readonly origin?: string;
  /** A Minari dataset: its `metadata.json` (path and sha256), checked when located. */
  readonly minari?: { readonly metadataFile: string; readonly metadataSha256: string };
}

/** Options of {@link locateDataset}; the defaults read the process's environment. */
export interface LocateOptions {
  /** Environment lookup (HOME, D4RL_DATASET_DIR, MINARI_DATASETS_PATH, OBD_D4RL_MIRRORS). */
  readonly env?: (name: string) => string | undefined;
  /** Told which file was found where, with its checksum (default: stderr). */
  readonly note?: (line: string) => void;
  /** The project's D4RL directory (default {@link D4RL_DIR}). */
  readonly d4rlDir?: string;
}

/**
 * Finds the file of `name` and hashes it, downloading only a D4RL file found nowhere:
 * - `embedded`: the dataset in the repository;
 * - a D4RL alias such as `hopper-m-r`: looked for under `data/d4rl/`, `$D4RL_DATASET_DIR`,
 *   `~/.d4rl/datasets/` (also D4RL master's `offline_rl/gym_mujoco_v2/` below the last two), checked
 *   against the size and sha256 we know; if absent, downloaded into `data/d4rl/` from the mirrors of
 *   `$OBD_D4RL_MIRRORS` in turn, then from D4RL's host, each try checked the same way;
 * - `minari:<dataset id>`: a Minari dataset under `$MINARI_DATASETS_PATH` or `~/.minari/datasets`
 *   (never downloaded: Minari's hosts are not reachable from the pipeline task);
 * - a directory: a local Minari dataset (`<dir>/data/` or `data/` itself);
 * - a path to an `.hdf5` file in D4RL layout.
 * A Minari dataset's metadata is read and checked here, before any stage runs.
 */
export async function locateDataset(
  name: string,
  progress: ProgressFactory,
  options: LocateOptions = {},
): Promise<LocatedDataset> {
  const env = options.env ?? processEnv;
  const note = options.note ?? ((line: string) => console.error(line));
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
  if (name.startsWith(MINARI_PREFIX)) return await locateMinariById(name, env, note);
  // A name ending in .hdf5 is a file even when it is a directory by mistake: say so, not "no metadata".
  if (/\.(hdf5|h5)$/i.test(name)) {
    await checkDatasetFile(name);
    const sha256 = await verifyFile({ url: "(local file)", path: name });
    return { name, file: name, sha256 };
  }
  if (await Deno.stat(name).then((s) => s.isDirectory, () => false)) {
    return await locateMinariDir(name, name, "a local directory", note);
  }
  const info = resolveD4rlAlias(name);
  const d4rlDir = options.d4rlDir ?? D4RL_DIR;
  const search = await findFile(d4rlSearchDirs(d4rlDir, env), [
    info.fileName,
    `offline_rl/gym_mujoco_v2/${info.fileName}`,
  ]);
  refuseUnreadable(search, `looking for ${info.fileName}`);
  const known = { bytes: info.sizeBytes, sha256: info.sha256 };
  if (search.found) {
    const { path, from } = search.found;
    const sha256 = await verifyFile({ url: info.url, path, ...known });
    note(`dataset ${name}: ${path} (from ${from.origin}), sha256 ${sha256}${checkedAgainst(info.sha256)}`);
    return { name, file: path, sha256, env: info.env, origin: from.origin };
  }
  const target = `${d4rlDir}/${info.fileName}`;
  const urls = [...d4rlMirrors(env).map((base) => base + info.fileName), info.url];
  const got = await downloadFromMirrors(
    { fileName: info.fileName, path: target, ...known },
    urls,
    progress,
    note,
  );
  note(
    `dataset ${name}: downloaded ${got.url} to ${target}, sha256 ${got.sha256}${checkedAgainst(info.sha256)}`,
  );
  return { name, file: target, sha256: got.sha256, env: info.env, origin: got.url };
}

function checkedAgainst(expected: string | undefined): string {
  return expected === undefined ? " (no published checksum to compare with)" : " (matches the known sha256)";
}

async function locateMinariById(
  name: string,
  env: EnvLookup,
  note: (line: string) => void,
): Promise<LocatedDataset> {
  const id = name.slice(MINARI_PREFIX.length).replace(/^\/+|\/+$/g, "");
  if (!/^[\w.-]+(\/[\w.-]+)*-v\d+$/.test(id)) {
    fail(
      "config",
      `'${name}' is not a Minari dataset id`,
      "write minari:<namespace>/<name>-v<N>, e.g. minari:mujoco/hopper/medium-v0",
    );
  }
  const dirs = minariSearchDirs(env);
  const search = await findFile(dirs, [`${id}/data/metadata.json`]);
  refuseUnreadable(search, `looking for Minari dataset ${id}`);
  if (!search.found) {
    const looked = dirs.map((d) => `${d.dir}/${id}/data`).join(", ") ||
      "nowhere (neither $MINARI_DATASETS_PATH nor HOME is set)";
    fail(
      "input",
      `Minari dataset ${id} not found (looked in ${looked})`,
      `on a machine with internet: pip install minari; minari download ${id}; then copy its ~/.minari/datasets/${id} to the same place here (the pipeline does not download Minari datasets)`,
    );
  }
  const dataDir = search.found.path.replace(/\/metadata\.json$/, "");
  return await locateMinariDir(name, dataDir, search.found.from.origin, note);
}

async function locateMinariDir(
  name: string,
  dir: string,
  origin: string,
  note: (line: string) => void,
): Promise<LocatedDataset> {
  const files = minariFiles(dir);
  const metadata = await readMinariMetadata(files.metadata);
  const exists = await Deno.stat(files.hdf5).then((s) => s.isFile, () => false);
  if (!exists) {
    fail(
      "input",
      `${files.hdf5} is missing (metadata.json is there)`,
      "copy the whole dataset directory, data/main_data.hdf5 included",
    );
  }
  const sha256 = await fileSha256(files.hdf5);
  const metadataSha256 = await fileSha256(files.metadata);
  note(
    `dataset ${name}: Minari ${metadata.datasetId} (${metadata.envId}) from ${origin}: ${files.hdf5} sha256 ${sha256}, metadata.json sha256 ${metadataSha256}${
      metadata.reference
        ? `, reference scores ${metadata.reference.min} … ${metadata.reference.max}`
        : `, no reference scores (scores: ${scoreScale({ env: minariEnv(metadata) })})`
    }`,
  );
  return {
    name,
    file: files.hdf5,
    sha256,
    env: minariEnv(metadata),
    origin,
    minari: { metadataFile: files.metadata, metadataSha256 },
  };
}

/**
 * Refuses a dataset path that is not a readable file, saying which: missing, outside what this task
 * may read (Deno's permission), or a directory.
 */
async function checkDatasetFile(name: string): Promise<void> {
  const hint = "give a path to an HDF5 file in D4RL layout, or a D4RL alias";
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(name);
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      fail(
        "input",
        `dataset file ${name} is outside what this task may read`,
        "copy or link it under the repository (e.g. data/), or run the module with --allow-read for it",
      );
    }
    return fail("input", `dataset file ${name} does not exist`, hint);
  }
  if (!info.isFile) {
    fail("input", `dataset file ${name} is ${info.isDirectory ? "a directory" : "not a regular file"}`, hint);
  }
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
  /** A Minari dataset: its metadata file and that file's sha256 (part of the cache key). */
  readonly minari?: { readonly metadataFile: string; readonly metadataSha256: string };
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
  /**
   * The dataset's own reference returns (Minari's `ref_min_score`, `ref_max_score`) when it has
   * them; absent for D4RL files, whose references are the environment's.
   */
  readonly reference?: { readonly min: number; readonly max: number; readonly source: string };
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

/**
 * What a study's scores on this dataset are, in words: normalized with the dataset's own reference
 * returns (Minari), with D4RL's (the v3 environments), or raw returns (a v5 environment without them).
 */
export function scoreScale(dataset: Pick<OfflineDataset, "env" | "reference">): string {
  const { reference, env } = dataset;
  if (reference) {
    return `normalized with ${reference.source}'s reference returns ${reference.min} … ${reference.max}`;
  }
  const spec = ENV_SPECS[env];
  return spec.refMinScore === 0 && spec.refMaxScore === 100
    ? `raw returns (${spec.gymId} has no reference returns and the dataset gives none)`
    : `D4RL normalized (${spec.gymId} references ${spec.refMinScore} … ${spec.refMaxScore})`;
}

/**
 * Normalized score of the dataset's average episode (the bar a learned policy should clear): with the
 * dataset's own reference returns when it has them (Minari), else the environment's (D4RL).
 */
export function datasetMeanScore(
  dataset: Pick<OfflineDataset, "env" | "episodeReturns" | "reference">,
): number {
  const returns = dataset.episodeReturns;
  const mean = returns.reduce((a, b) => a + b, 0) / Math.max(1, returns.length);
  const reference = dataset.reference;
  return reference
    ? (100 * (mean - reference.min)) / (reference.max - reference.min)
    : normalizedScore(dataset.env, mean);
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
    const minari = config.minari ? await readMinariMetadata(config.minari.metadataFile) : undefined;
    const data = minari
      ? await loadMinariDataset(config.file, minari, config.minTransitions)
      : await loadD4rlDataset(config.file, {
        env: config.env ? envBody(config.env) : undefined,
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
    if (data.timeoutsAbsent) {
      ctx.metric("timeouts", "absent (a D4RL v0/v1 file): read as none, episodes end only at terminals");
    }
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
      ...(minari?.reference
        ? { reference: { ...minari.reference, source: `${minari.datasetId} metadata.json` } }
        : {}),
    };
  },
});

/** The environment a Minari dataset was recorded in, from its `env_spec.id` (`Hopper-v5` → `hopper-v5`). */
export function minariEnv(metadata: Pick<MinariMetadata, "envId" | "file">): EnvName {
  return envOfGymId(metadata.envId) ??
    fail(
      "input",
      `${metadata.file}: field 'env_spec.id' is ${metadata.envId}, an environment we do not model`,
      `use a dataset of ${ALL_ENV_NAMES.map((e) => ENV_SPECS[e].gymId).join(", ")}`,
    );
}

/** Reads a Minari dataset's episodes and checks them with the D4RL rules (finite values, action bounds). */
async function loadMinariDataset(file: string, metadata: MinariMetadata, minTransitions: number) {
  const arrays = await readMinariEpisodes(file, metadata);
  const { n, obsDim, actDim } = arrays;
  const raw: RawD4rlFile = {
    path: file,
    keys: ["actions", "next_observations", "observations", "rewards", "terminals", "timeouts"],
    attrs: { env: minariEnv(metadata), env_id: metadata.envId, dataset_id: metadata.datasetId },
    datasets: {
      observations: { data: arrays.observations, shape: [n, obsDim], dtype: "float32" },
      next_observations: { data: arrays.nextObservations, shape: [n, obsDim], dtype: "float32" },
      actions: { data: arrays.actions, shape: [n, actDim], dtype: "float32" },
      rewards: { data: arrays.rewards, shape: [n], dtype: "float32" },
      terminals: { data: arrays.terminals, shape: [n], dtype: "bool" },
      timeouts: { data: arrays.timeouts, shape: [n], dtype: "bool" },
    },
  };
  return validateD4rl(raw, { minTransitions });
}
