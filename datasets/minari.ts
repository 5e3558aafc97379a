/**
 * Minari datasets (Farama's successor to D4RL) read without Python: a dataset directory holds
 * `data/metadata.json` and `data/main_data.hdf5`, the latter one group `episode_<i>` per episode with
 * `observations` (T + 1 rows: the reset observation and one after every step), `actions`, `rewards`,
 * `terminations` and `truncations` (T rows each) — minari/dataset/_storages/hdf5_storage.py and
 * minari_storage.py. Episodes are flattened into the D4RL layout with stored next observations
 * (row t: observations[t], actions[t], rewards[t], next = observations[t + 1]); terminations become
 * D4RL's `terminals` and truncations its `timeouts`, kept apart.
 * @module
 */

import { join } from "node:path";
import { fail } from "../core/errors.ts";
import type { D4rlArrays } from "./hdf5.ts";
import { type H5Array, inspectHdf5File, loadH5wasm, openForReading, readDataset } from "./hdf5_read.ts";

/** The Gymnasium MuJoCo environments a Minari dataset may name (`env_spec.id`), and their versions we model. */
export const MINARI_ENVS: Readonly<Record<string, "hopper" | "halfcheetah" | "walker2d">> = {
  Hopper: "hopper",
  HalfCheetah: "halfcheetah",
  Walker2d: "walker2d",
};
/** Gymnasium versions we model: v3 (Gym v3, D4RL's) and v5 (Minari's `mujoco/*` datasets). */
export const MINARI_ENV_VERSIONS: readonly number[] = [3, 5];

/** Observation and action widths of the environments (the same in v3 and v5). */
const WIDTHS = { hopper: [11, 3], halfcheetah: [17, 6], walker2d: [17, 6] } as const;

/**
 * Gymnasium v5 constructor defaults (gymnasium/envs/mujoco/*_v5.py): a dataset whose `env_spec.kwargs`
 * sets one of these to another value, or sets anything else, describes an environment we do not model.
 */
const V5_DEFAULTS: Readonly<Record<string, Readonly<Record<string, unknown>>>> = {
  hopper: {
    xml_file: "hopper.xml",
    frame_skip: 4,
    forward_reward_weight: 1,
    ctrl_cost_weight: 1e-3,
    healthy_reward: 1,
    terminate_when_unhealthy: true,
    healthy_state_range: [-100, 100],
    healthy_z_range: [0.7, Infinity],
    healthy_angle_range: [-0.2, 0.2],
    reset_noise_scale: 5e-3,
    exclude_current_positions_from_observation: true,
  },
  halfcheetah: {
    xml_file: "half_cheetah.xml",
    frame_skip: 5,
    forward_reward_weight: 1,
    ctrl_cost_weight: 0.1,
    reset_noise_scale: 0.1,
    exclude_current_positions_from_observation: true,
  },
  walker2d: {
    xml_file: "walker2d_v5.xml",
    frame_skip: 4,
    forward_reward_weight: 1,
    ctrl_cost_weight: 1e-3,
    healthy_reward: 1,
    terminate_when_unhealthy: true,
    healthy_z_range: [0.8, 2],
    healthy_angle_range: [-1, 1],
    reset_noise_scale: 5e-3,
    exclude_current_positions_from_observation: true,
  },
};
/** Keyword arguments that change nothing we compute. */
const HARMLESS_KWARGS = [
  "render_mode",
  "default_camera_config",
  "width",
  "height",
  "camera_id",
  "camera_name",
];

/** What we use of a Minari dataset's `metadata.json`. */
export interface MinariMetadata {
  /** The file it was read from. */
  readonly file: string;
  /** `dataset_id`, e.g. `mujoco/hopper/medium-v0`. */
  readonly datasetId: string;
  /** `env_spec.id`, e.g. `Hopper-v5`. */
  readonly envId: string;
  /** Our environment. */
  readonly env: "hopper" | "halfcheetah" | "walker2d";
  /** The Gymnasium version of `env_spec.id` (3 or 5). */
  readonly envVersion: number;
  /** `env_spec.max_episode_steps`. */
  readonly maxEpisodeSteps: number;
  /** `total_episodes`. */
  readonly totalEpisodes: number;
  /** `total_steps`. */
  readonly totalSteps: number;
  /** `ref_min_score` and `ref_max_score`, when both are present (Minari's normalization). */
  readonly reference?: { readonly min: number; readonly max: number };
  /** `minari_version`, when present. */
  readonly minariVersion?: string;
  /** `algorithm_name`, when present. */
  readonly algorithm?: string;
}

/** Where a Minari dataset's two files are, given its directory (or its `data/` directory). */
export function minariFiles(
  dir: string,
): { readonly metadata: string; readonly hdf5: string; readonly dataDir: string } {
  const dataDir = /(^|\/)data\/?$/.test(dir) ? dir : join(dir, "data");
  return { dataDir, metadata: join(dataDir, "metadata.json"), hdf5: join(dataDir, "main_data.hdf5") };
}

/**
 * Reads and checks `metadata.json`: a JSON object with `dataset_id`, `data_format` "hdf5",
 * `total_episodes`, `total_steps` and an `env_spec` (a JSON string) whose `id` is Hopper, HalfCheetah
 * or Walker2d at v3 or v5, `max_episode_steps` 1000 and no keyword argument that changes the
 * environment; the observation and action spaces, when given, must be Boxes of the environment's
 * widths. Fails with "input", naming the file and the field, before any data is read.
 */
export async function readMinariMetadata(file: string): Promise<MinariMetadata> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (caught) {
    if (caught instanceof Deno.errors.NotFound) {
      fail(
        "input",
        `${file} is missing: a Minari dataset directory holds data/metadata.json beside data/main_data.hdf5`,
        "give the dataset's directory as Minari wrote it (minari download, or a copy of ~/.minari/datasets/<id>)",
      );
    }
    throw caught;
  }
  let json: unknown;
  try {
    json = parsePythonJson(text);
  } catch (caught) {
    fail(
      "input",
      `${file} is not valid JSON (${(caught as Error).message})`,
      "restore the file from the dataset",
    );
  }
  const bad = (field: string, why: string, hint = "restore metadata.json from the dataset"): never =>
    fail("input", `${file}: field '${field}' ${why}`, hint);
  if (typeof json !== "object" || json === null || Array.isArray(json)) bad("(root)", "is not a JSON object");
  const meta = json as Record<string, unknown>;
  const str = (key: string): string =>
    typeof meta[key] === "string" ? meta[key] as string : bad(key, "is missing or not a string");
  const int = (key: string): number =>
    Number.isSafeInteger(meta[key]) && (meta[key] as number) >= 0
      ? meta[key] as number
      : bad(key, "is missing or not a non-negative integer");
  const datasetId = str("dataset_id");
  const format = meta.data_format ?? "hdf5";
  if (format !== "hdf5") {
    bad(
      "data_format",
      `is '${format}'; only 'hdf5' datasets are read`,
      "convert it with Minari to the hdf5 format",
    );
  }

  let spec: Record<string, unknown>;
  try {
    spec = parsePythonJson(str("env_spec")) as Record<string, unknown>;
  } catch {
    bad("env_spec", "is not a JSON string");
  }
  const envId = typeof spec!.id === "string" ? spec!.id as string : bad("env_spec.id", "is missing");
  const match = /^(\w+)-v(\d+)$/.exec(envId);
  const env = match ? MINARI_ENVS[match[1]] : undefined;
  const known = Object.keys(MINARI_ENVS).flatMap((e) => MINARI_ENV_VERSIONS.map((v) => `${e}-v${v}`)).join(
    ", ",
  );
  if (!match || env === undefined) {
    bad("env_spec.id", `is '${envId}', an environment we do not model`, `use a dataset of ${known}`);
  }
  const envVersion = Number(match![2]);
  if (!MINARI_ENV_VERSIONS.includes(envVersion)) {
    bad("env_spec.id", `is '${envId}', a version we do not model`, `use a dataset of ${known}`);
  }
  const maxEpisodeSteps = spec!.max_episode_steps;
  if (maxEpisodeSteps !== 1000) {
    bad(
      "env_spec.max_episode_steps",
      `is ${JSON.stringify(maxEpisodeSteps)}; the environments have 1000-step episodes`,
    );
  }
  const kwargs = (spec!.kwargs ?? {}) as Record<string, unknown>;
  const defaults = envVersion === 5 ? V5_DEFAULTS[env!] : {};
  for (const [key, value] of Object.entries(kwargs)) {
    if (HARMLESS_KWARGS.includes(key)) continue;
    const wanted = defaults[key];
    const same = wanted !== undefined &&
      JSON.stringify(normalizeNumbers(value)) === JSON.stringify(normalizeNumbers(wanted));
    if (!same) {
      bad(
        `env_spec.kwargs.${key}`,
        `is ${JSON.stringify(value)}, not ${envId}'s default`,
        `only ${envId} with its default settings is modelled`,
      );
    }
  }
  const [obsDim, actDim] = WIDTHS[env!];
  for (const [key, width] of [["observation_space", obsDim], ["action_space", actDim]] as const) {
    if (meta[key] === undefined) continue;
    let space: Record<string, unknown>;
    try {
      space = parsePythonJson(str(key)) as Record<string, unknown>;
    } catch {
      bad(key, "is not a JSON string");
    }
    if (space!.type !== "Box" || JSON.stringify(space!.shape) !== `[${width}]`) {
      bad(
        key,
        `is ${space!.type} of shape ${JSON.stringify(space!.shape)}; ${envId} has a Box of shape [${width}]`,
      );
    }
  }
  const min = meta.ref_min_score, max = meta.ref_max_score;
  const hasReference = typeof min === "number" && typeof max === "number";
  if (hasReference && !(Number.isFinite(min) && Number.isFinite(max) && max > min)) {
    bad("ref_max_score", `(${max}) must be finite and above ref_min_score (${min})`);
  }
  return {
    file,
    datasetId,
    envId,
    env: env!,
    envVersion,
    maxEpisodeSteps: 1000,
    totalEpisodes: int("total_episodes"),
    totalSteps: int("total_steps"),
    ...(hasReference ? { reference: { min: min as number, max: max as number } } : {}),
    ...(typeof meta.minari_version === "string" ? { minariVersion: meta.minari_version } : {}),
    ...(typeof meta.algorithm_name === "string" ? { algorithm: meta.algorithm_name } : {}),
  };
}

/** JSON as Python's `json.dumps` writes it: bare `Infinity`, `-Infinity` and `NaN` allowed. */
function parsePythonJson(text: string): unknown {
  // Only where a value may stand (after `[`, `:` or `,`), so strings holding these words are kept.
  const value = /(?<=[[:,]\s*)(-?Infinity|NaN)(?=\s*[\],}])/g;
  return JSON.parse(
    text.replace(value, (word) => word === "NaN" ? "null" : word.replace("Infinity", "1e999")),
  );
}

/** Tuples arrive as lists: compare values through their JSON form. */
function normalizeNumbers(value: unknown): unknown {
  return Array.isArray(value) ? value.map(normalizeNumbers) : value;
}

/** A Minari dataset read into memory: the flattened rows and what came with them. */
export interface MinariArrays extends D4rlArrays {
  /** Stored: observations[t + 1] of each row's episode. */
  readonly nextObservations: Float32Array;
  /** Steps of each episode, in episode order. */
  readonly episodeLengths: Int32Array;
  /** Whether each episode ended by termination (1) or truncation (0). */
  readonly episodeTerminated: Uint8Array;
}

/**
 * Reads `main_data.hdf5` and flattens its episodes (`episode_0` … `episode_<n−1>`, as many as
 * `expect.totalEpisodes`) into the D4RL layout. Each episode needs `observations` [T + 1, obsDim],
 * `actions` [T, actDim], `rewards`, `terminations`, `truncations` [T], T ≥ 1, exactly one of the last
 * two set, on the last step only. An episode group with mismatched lengths, a missing key, a flag in
 * the middle or another width fails with "input" naming the file, the group and the field.
 */
export async function readMinariEpisodes(
  file: string,
  expect: Pick<MinariMetadata, "totalEpisodes" | "totalSteps" | "env" | "envId">,
): Promise<MinariArrays> {
  await inspectHdf5File(file);
  const h5 = await loadH5wasm();
  const handle = openForReading(h5, file);
  try {
    const layout = "Minari";
    const bad = (field: string, why: string): never =>
      fail(
        "input",
        `${file}: '${field}' ${why}`,
        "the file does not follow Minari's layout; re-download the dataset",
      );
    const keys = [...handle.keys()];
    const episodes = keys.filter((k) => /^episode_\d+$/.test(k));
    if (episodes.length !== expect.totalEpisodes) {
      bad(
        "/",
        `holds ${episodes.length} episode groups but metadata.json says total_episodes = ${expect.totalEpisodes}`,
      );
    }
    const [obsDim, actDim] = WIDTHS[expect.env];
    const parts: {
      obs: H5Array<Float32Array>;
      act: H5Array<Float32Array>;
      rew: H5Array<Float32Array>;
      term: H5Array<Uint8Array>;
      trunc: H5Array<Uint8Array>;
    }[] = [];
    let n = 0;
    for (let i = 0; i < expect.totalEpisodes; i++) {
      const group = `episode_${i}`;
      if (!keys.includes(group)) bad(group, "is missing (episode groups must be numbered from 0)");
      const members = [...(handle.get(group) as { keys(): string[] }).keys()];
      for (const key of ["observations", "actions", "rewards", "terminations", "truncations"]) {
        if (!members.includes(key)) bad(`${group}/${key}`, `is missing (found: ${members.join(", ")})`);
      }
      const read = (key: string, want: "float" | "flag") =>
        readDataset(h5, handle, file, `${group}/${key}`, want, layout);
      const obs = read("observations", "float") as H5Array<Float32Array>;
      const act = read("actions", "float") as H5Array<Float32Array>;
      const rew = read("rewards", "float") as H5Array<Float32Array>;
      const term = read("terminations", "flag") as H5Array<Uint8Array>;
      const trunc = read("truncations", "flag") as H5Array<Uint8Array>;
      const steps = act.shape[0];
      if (obs.shape.length !== 2 || obs.shape[1] !== obsDim) {
        bad(
          `${group}/observations`,
          `has shape [${obs.shape.join(", ")}]; ${expect.envId} needs [T + 1, ${obsDim}]`,
        );
      }
      if (act.shape.length !== 2 || act.shape[1] !== actDim) {
        bad(`${group}/actions`, `has shape [${act.shape.join(", ")}]; ${expect.envId} needs [T, ${actDim}]`);
      }
      if (steps < 1) bad(`${group}/actions`, "is empty");
      if (obs.shape[0] !== steps + 1) {
        bad(
          `${group}/observations`,
          `has ${obs.shape[0]} rows; expected ${steps + 1} (actions' ${steps} + 1)`,
        );
      }
      for (
        const [key, array] of [["rewards", rew], ["terminations", term], ["truncations", trunc]] as const
      ) {
        if (array.shape.length !== 1 || array.shape[0] !== steps) {
          bad(`${group}/${key}`, `has shape [${array.shape.join(", ")}]; expected [${steps}] like actions`);
        }
      }
      for (let t = 0; t < steps - 1; t++) {
        if (term.data[t] || trunc.data[t]) {
          bad(
            `${group}/${term.data[t] ? "terminations" : "truncations"}`,
            `is set at step ${t}, before the episode's last step ${steps - 1}`,
          );
        }
      }
      const last = steps - 1;
      if (term.data[last] && trunc.data[last]) {
        bad(`${group}/truncations`, `and terminations are both set at the last step ${last}`);
      }
      parts.push({ obs, act, rew, term, trunc });
      n += steps;
    }
    if (n !== expect.totalSteps) {
      bad("/", `holds ${n} steps but metadata.json says total_steps = ${expect.totalSteps}`);
    }
    const out = {
      n,
      obsDim,
      actDim,
      observations: new Float32Array(n * obsDim),
      nextObservations: new Float32Array(n * obsDim),
      actions: new Float32Array(n * actDim),
      rewards: new Float32Array(n),
      terminals: new Uint8Array(n),
      timeouts: new Uint8Array(n),
      episodeLengths: new Int32Array(parts.length),
      episodeTerminated: new Uint8Array(parts.length),
    };
    let row = 0;
    parts.forEach(({ obs, act, rew, term }, e) => {
      const steps = act.shape[0];
      out.observations.set(obs.data.subarray(0, steps * obsDim), row * obsDim);
      out.nextObservations.set(obs.data.subarray(obsDim, (steps + 1) * obsDim), row * obsDim);
      out.actions.set(act.data, row * actDim);
      out.rewards.set(rew.data, row);
      const end = row + steps - 1;
      // An episode ends either way: terminated, or cut (truncated, or the collector stopped — also a cut).
      if (term.data[steps - 1]) out.terminals[end] = 1;
      else out.timeouts[end] = 1;
      out.episodeLengths[e] = steps;
      out.episodeTerminated[e] = term.data[steps - 1];
      row += steps;
    });
    return out;
  } finally {
    handle.close();
  }
}
