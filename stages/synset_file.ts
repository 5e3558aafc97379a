/**
 * Synthetic sets as HDF5 files, so a set leaves the cache and sets made elsewhere can be scored on
 * equal terms (`deno task evaluate <file>`). One file per set, readable by h5py:
 *
 *   states             [N, obsDim] float32   raw observations
 *   states_normalized  [N, obsDim] float32   (states − state_mean) / state_std: what students train on
 *   actions            [N, actDim] float32
 *   state_mean         [obsDim]    float32   the normalization the set was distilled in
 *   state_std          [obsDim]    float32
 *
 * with root attributes: `format` ("obd-synset"), `format_version`, `env`, `size`, and whatever the
 * writer adds (method, objective value, seed, config, teacher and dataset sha256, code version).
 * A reader needs `actions`, `state_mean`, `state_std` and one of the two state arrays, plus the
 * environment (the `env` attribute, or a dataset given by the user).
 * @module
 */

import { atomicWrite, type AttrValue, loadH5wasm, type WritableAttr } from "../datasets/hdf5.ts";
import { fail } from "../core/errors.ts";
import { ENV_NAMES, ENV_SPECS, type EnvName } from "../envs/specs.ts";
import { type SyntheticSet, validateSyntheticSet } from "./synset.ts";

/** Written in every set file's `format` attribute. */
export const SYNSET_FORMAT = "obd-synset";
/** Bumped when the layout changes. */
export const SYNSET_FORMAT_VERSION = 1;

/** The file name of a set in a run directory: `<dataset>-<method>-seed<k>.hdf5` (dataset label made file-safe). */
export function synsetFileName(dataset: string, method: string, seed: number): string {
  const label = dataset.split("/").pop()!.replace(/\.(hdf5|h5)$/i, "").replace(/[^A-Za-z0-9_.-]+/g, "_");
  return `${label}-${method}-seed${seed}.hdf5`;
}

/**
 * Writes `set` to `path` (atomically: complete or absent), with `attrs` on the root group besides
 * the format, environment and size. The set is validated first (finite, consistent dimensions), and
 * the file read back and compared before it is renamed into place.
 */
export async function writeSynsetFile(
  path: string,
  set: SyntheticSet,
  attrs: Readonly<Record<string, WritableAttr>> = {},
): Promise<void> {
  validateSyntheticSet(set, { what: `the set for ${path}` });
  const { size: n, obsDim: d, actDim: m } = set;
  const datasets: [string, Float32Array, number[]][] = [
    ["states", set.rawStates, [n, d]],
    ["states_normalized", set.states, [n, d]],
    ["actions", set.actions, [n, m]],
    ["state_mean", set.stateMean, [d]],
    ["state_std", set.stateStd, [d]],
  ];
  const all: Record<string, WritableAttr> = {
    format: SYNSET_FORMAT,
    format_version: SYNSET_FORMAT_VERSION,
    env: set.env,
    size: n,
    ...attrs,
  };
  const h5 = await loadH5wasm();
  await atomicWrite(path, (tmp) => {
    const file = new h5.File(tmp, "x", { libver: ["earliest", "v110"] });
    if (file.file_id < 0n) fail("io", `cannot create ${tmp} (HDF5's diagnostics are on stderr)`);
    try {
      for (const [name, data, shape] of datasets) {
        file.create_dataset({ name, data: Float32Array.from(data), shape, dtype: "<f4" });
      }
      for (const [name, value] of Object.entries(all)) {
        if (typeof value === "string" || (Array.isArray(value) && typeof value[0] === "string")) {
          file.create_attribute(name, value as string | string[]);
        } else {
          const numbers = (Array.isArray(value) ? value : [value]) as number[];
          const ints = numbers.every((v) => Number.isInteger(v) && Math.abs(v) < 2 ** 31);
          const payload = ints ? Int32Array.from(numbers) : Float64Array.from(numbers);
          file.create_attribute(name, payload, Array.isArray(value) ? [numbers.length] : []);
        }
      }
    } finally {
      file.close();
    }
    // h5wasm may skip a failed write silently: read everything back before the rename.
    const back = readOpen(h5, tmp);
    try {
      for (const [name, data, shape] of datasets) {
        const got = back.arrays.get(name);
        if (
          !got || got.shape.join() !== shape.join() || got.data.length !== data.length ||
          got.data.some((v, i) => !Object.is(v, Math.fround(data[i])))
        ) {
          fail("internal", `writing ${path}: dataset ${name} did not read back as written`);
        }
      }
      for (const [name, value] of Object.entries(all)) {
        if (JSON.stringify(back.attrs[name]) !== JSON.stringify(value)) {
          fail("internal", `writing ${path}: attribute ${name} did not read back as written`);
        }
      }
    } finally {
      back.close();
    }
  });
}

/** A set file as read: the set, every root attribute, and the path. */
export interface SynsetFile {
  /** Where it was read from. */
  readonly path: string;
  /** The set (states in its own normalized space; raw states derived when the file has none). */
  readonly set: SyntheticSet;
  /** Root attributes (method, seed, config, … as the writer stored them). */
  readonly attrs: Readonly<Record<string, AttrValue>>;
}

const SET_ARRAYS = ["states", "states_normalized", "actions", "state_mean", "state_std"];

interface OpenedFile {
  arrays: Map<string, { data: Float32Array; shape: number[] }>;
  attrs: Record<string, AttrValue>;
  close(): void;
}

function readOpen(h5: Awaited<ReturnType<typeof loadH5wasm>>, path: string): OpenedFile {
  const file = new h5.File(path, "r");
  if (file.file_id < 0n) {
    fail("input", `HDF5 could not open ${path} (not an HDF5 file, or damaged)`, "give a set file (.hdf5)");
  }
  const arrays = new Map<string, { data: Float32Array; shape: number[] }>();
  const attrs: Record<string, AttrValue> = {};
  try {
    for (const name of file.keys()) {
      const entity = file.get(name);
      if (!(entity instanceof h5.Dataset)) continue;
      const value = entity.value;
      if (!(value instanceof Float32Array || value instanceof Float64Array)) {
        fail(
          "input",
          `${path}: dataset ${name} is not float32 or float64 (dtype ${JSON.stringify(entity.dtype)})`,
        );
      }
      arrays.set(name, { data: Float32Array.from(value), shape: entity.shape ?? [] });
    }
    for (const name of Object.keys(file.attrs)) {
      try {
        const v = file.attrs[name].json_value;
        if (
          typeof v === "string" || typeof v === "number" || typeof v === "boolean" ||
          (Array.isArray(v) && v.every((x) => typeof x === typeof v[0] && typeof x !== "object"))
        ) {
          attrs[name] = v as AttrValue;
        }
      } catch { /* attribute types we do not read are informational */ }
    }
  } catch (e) {
    file.close();
    throw e;
  }
  return { arrays, attrs, close: () => file.close() };
}

/**
 * Reads and checks a set file before any work: the arrays it needs present (a missing one named,
 * with what it must hold), shapes consistent with each other and with the environment, every value
 * finite, the std positive. `expected` (a dataset's environment and dimensions) wins over the file's
 * `env` attribute and must agree with it.
 */
export async function readSynsetFile(
  path: string,
  expected?: {
    readonly env: EnvName;
    readonly obsDim: number;
    readonly actDim: number;
    readonly name: string;
  },
): Promise<SynsetFile> {
  const exists = await Deno.stat(path).then((s) => s.isFile, () => false);
  if (!exists) fail("input", `set file ${path} does not exist`, "give the path of a set's .hdf5 file");
  const h5 = await loadH5wasm();
  const opened = readOpen(h5, path);
  try {
    const { arrays, attrs } = opened;
    const envAttr = attrs.env;
    if (envAttr !== undefined && !(ENV_NAMES as readonly unknown[]).includes(envAttr)) {
      fail(
        "input",
        `${path}: attribute env is ${JSON.stringify(envAttr)}, expected one of ${ENV_NAMES.join(", ")}`,
      );
    }
    if (expected && envAttr !== undefined && envAttr !== expected.env) {
      fail(
        "input",
        `${path}: attribute env is ${envAttr}, expected ${expected.env} (dataset ${expected.name})`,
        "score the set with a dataset of its own environment",
      );
    }
    const env = expected?.env ?? (envAttr as EnvName | undefined);
    if (!env) {
      fail(
        "input",
        `${path} has no env attribute`,
        `name its dataset: --dataset <name> (or add env = ${ENV_NAMES.join("|")})`,
      );
    }
    const obsDim = expected?.obsDim ?? ENV_SPECS[env].obsDim;
    const actDim = expected?.actDim ?? ENV_SPECS[env].actDim;
    const need = (name: string, what: string) => {
      const a = arrays.get(name);
      if (!a) fail("input", `${path} has no dataset ${name}`, `a set file needs ${name}: ${what}`);
      return a;
    };
    const mean = need("state_mean", `the normalization's mean, [${obsDim}] float`);
    const std = need("state_std", `the normalization's std, [${obsDim}] float`);
    const actions = need("actions", `[N, ${actDim}] float`);
    const normalized = arrays.get("states_normalized");
    const raw = arrays.get("states");
    if (!normalized && !raw) {
      fail(
        "input",
        `${path} has no dataset states_normalized (or states)`,
        `a set file needs its states, [N, ${obsDim}] float, normalized or raw`,
      );
    }
    const shapeIs = (name: string, a: { shape: number[] }, shape: number[]) => {
      if (a.shape.join() !== shape.join()) {
        fail(
          "input",
          `${path}: ${name} has shape [${a.shape.join(", ")}], expected [${shape.join(", ")}] (${env})`,
        );
      }
    };
    shapeIs("state_mean", mean, [obsDim]);
    shapeIs("state_std", std, [obsDim]);
    const n = actions.shape[0];
    shapeIs("actions", actions, [n, actDim]);
    if (normalized) shapeIs("states_normalized", normalized, [n, obsDim]);
    if (raw) shapeIs("states", raw, [n, obsDim]);
    for (const [name, a] of [...arrays].filter(([k]) => SET_ARRAYS.includes(k))) {
      const width = a.shape.length === 2 ? a.shape[1] : a.data.length;
      const bad = a.data.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) {
        fail(
          "input",
          `${path}: ${name} has a non-finite value (${a.data[bad]}) at row ${
            Math.floor(bad / width)
          }, column ${bad % width}; expected finite numbers`,
          "the set diverged or is corrupt; distill it again",
        );
      }
    }
    const set: SyntheticSet = {
      env,
      size: n,
      obsDim,
      actDim,
      states: normalized
        ? normalized.data
        : raw!.data.map((v, i) => (v - mean.data[i % obsDim]) / std.data[i % obsDim]),
      rawStates: raw
        ? raw.data
        : normalized!.data.map((v, i) => v * std.data[i % obsDim] + mean.data[i % obsDim]),
      actions: actions.data,
      stateMean: mean.data,
      stateStd: std.data,
    };
    validateSyntheticSet(set, { env, obsDim, actDim, what: path });
    return { path, set, attrs };
  } finally {
    opened.close();
  }
}
