/**
 * HDF5 files in the D4RL layout, read and written through h5wasm (HDF5 compiled to WebAssembly).
 *
 * Three things about h5wasm 0.10.3 shape this module:
 *
 * 1. Its Emscripten runtime enumerates every environment variable when it starts, which Deno refuses
 *    under a scoped `--allow-env=NAMES` (or none at all). {@link loadH5wasm} starts it once with an
 *    empty `process.env` and is the only place that may import h5wasm.
 * 2. Its C wrappers ignore most HDF5 status codes: a failed attribute or dataset write is silently
 *    skipped (HDF5 prints `HDF5-DIAG` to stderr and h5wasm returns as if it had worked). So every file
 *    we write is read back and compared before it is renamed into place, and reads call the low-level
 *    `get_dataset_data` themselves to see its status.
 * 3. It cannot create HDF5 enum datatypes, yet h5py reads a dataset as `bool` only when its type is
 *    h5py's enum `{FALSE: 0, TRUE: 1}` over int8 — which is how real D4RL files store `terminals` and
 *    `timeouts`. We write those as int8 and then rewrite their datatype message in the closed file;
 *    see `patchInt8ToBoolEnum` below for the exact (small, verified) surgery.
 *
 * Files are written in HDF5's oldest on-disk format (superblock 0, version-1 object headers), like h5py's
 * default and the published D4RL files, and never newer than HDF5 1.10 can read.
 * @module
 */

import process from "node:process";
import { writeAtomic } from "../core/atomic.ts";
import { fail, PipelineFailure, toPipelineError } from "../core/errors.ts";

/** The h5wasm module, as {@link loadH5wasm} hands it out. */
export type H5Wasm = typeof import("h5wasm");
type H5File = InstanceType<H5Wasm["File"]>;

// ---------------------------------------------------------------------------------------------
// Loading h5wasm
// ---------------------------------------------------------------------------------------------

let h5wasmPromise: Promise<H5Wasm> | undefined;

/**
 * Loads and starts h5wasm once per process (later calls share the same promise).
 *
 * While the Emscripten runtime starts, `process.env` is replaced by an empty object so that its
 * enumeration of the environment needs no `--allow-env`; HDF5 then sees no `HDF5_*` variables, which is
 * what we want anyway. Code running concurrently with the first call also sees the empty environment.
 * HDF5's plugin search paths are cleared too: they point at directories of the machine that built
 * h5wasm, and HDF5 probes them whenever it fails to open a file, which throws a permission error
 * from inside the C library under `--allow-read=.`. D4RL files need no plugins (gzip is built in).
 */
export function loadH5wasm(): Promise<H5Wasm> {
  h5wasmPromise ??= startH5wasm().catch((caught) => {
    h5wasmPromise = undefined; // let a later call retry, e.g. after permissions were fixed
    throw new PipelineFailure(toPipelineError(caught, "starting h5wasm"));
  });
  return h5wasmPromise;
}

async function startH5wasm(): Promise<H5Wasm> {
  const original = Object.getOwnPropertyDescriptor(process, "env");
  Object.defineProperty(process, "env", { value: {}, configurable: true, writable: true });
  try {
    const h5 = await import("h5wasm");
    const module = await h5.ready;
    while (module.get_plugin_search_paths().length > 0) module.remove_plugin_search_path(0);
    return h5;
  } finally {
    if (original) Object.defineProperty(process, "env", original);
    else delete (process as { env?: unknown }).env;
  }
}

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

/** An attribute value as read back from a file (h5py booleans arrive as `boolean`). */
export type AttrValue = string | number | boolean | string[] | number[] | boolean[];

/**
 * An attribute value we can write: integers within int32 are stored as int32, other safe integers as
 * int64, any other number as float64, strings as variable-length UTF-8 (h5py reads them as `str`).
 */
export type WritableAttr = string | number | readonly string[] | readonly number[];

/** One dataset as read from a file. */
export interface H5Array<T extends Float32Array | Uint8Array> {
  /** The values, row-major (C order), exactly `shape`'s product of them. */
  readonly data: T;
  /** The dataset's shape in the file. */
  readonly shape: readonly number[];
  /**
   * The stored type: `float32`, `float64` (converted to float32 when read), `bool` (h5py's enum),
   * `int8` or `uint8`.
   */
  readonly dtype: string;
}

/** The D4RL datasets found in a file, keyed by their names in the file; absent keys are `undefined`. */
export interface RawD4rlDatasets {
  /** `[N, obsDim]` in D4RL. */
  readonly observations?: H5Array<Float32Array>;
  /** `[N, actDim]` in D4RL. */
  readonly actions?: H5Array<Float32Array>;
  /** `[N]` in D4RL. */
  readonly rewards?: H5Array<Float32Array>;
  /** `[N, obsDim]`, optional in D4RL. */
  readonly next_observations?: H5Array<Float32Array>;
  /** `[N]` booleans in D4RL. */
  readonly terminals?: H5Array<Uint8Array>;
  /** `[N]` booleans in D4RL (v2 datasets). */
  readonly timeouts?: H5Array<Uint8Array>;
}

/** What {@link readD4rlFile} found: the D4RL datasets as stored, unvalidated, plus the root attributes. */
export interface RawD4rlFile {
  /** The path the file was read from, for messages. */
  readonly path: string;
  /** Every top-level name in the file (datasets and groups such as `infos`), sorted. */
  readonly keys: readonly string[];
  /** The D4RL datasets present in the file. */
  readonly datasets: RawD4rlDatasets;
  /** Root attributes of supported types (strings, numbers, booleans and flat arrays of them). */
  readonly attrs: Readonly<Record<string, AttrValue>>;
}

/** A dataset in D4RL layout held in memory: `n` rows, row-major matrices. */
export interface D4rlArrays {
  /** Number of rows (transitions). */
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
  /** `[n]`, 0 or 1: the episode ended in a terminal state at this step. */
  readonly terminals: Uint8Array;
  /** `[n]`, 0 or 1: the episode was cut by a time limit after this step. */
  readonly timeouts: Uint8Array;
  /** `[n, obsDim]`, optional: the observation after each step. */
  readonly nextObservations?: Float32Array;
}

/** The float datasets of the D4RL layout (file keys). */
export const D4RL_FLOAT_KEYS = ["observations", "actions", "rewards", "next_observations"] as const;
/** The boolean datasets of the D4RL layout (file keys). */
export const D4RL_FLAG_KEYS = ["terminals", "timeouts"] as const;

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/**
 * Reads the D4RL datasets (`observations`, `actions`, `rewards`, `terminals`, `timeouts`, and
 * `next_observations` when present) and the root attributes of an HDF5 file; everything else
 * (`infos/*`, `metadata/*`) is ignored. Nothing is validated beyond what is needed to represent the
 * data: see `validateD4rl` in `d4rl.ts` for the D4RL rules.
 *
 * Fails with kind "input" when the file is missing, is not HDF5, is truncated, cannot be opened, or
 * holds a D4RL key of a type that cannot be represented (e.g. `terminals` as float64); with "io" when
 * it may not be read.
 */
export async function readD4rlFile(path: string): Promise<RawD4rlFile> {
  await inspectHdf5File(path);
  const h5 = await loadH5wasm();
  const file = openForReading(h5, path);
  try {
    return readOpenFile(h5, file, path);
  } finally {
    file.close();
  }
}

/** The facts {@link inspectHdf5File} reads from a file's superblock. */
export interface Hdf5FileFacts {
  /** Bytes on disk. */
  readonly size: number;
  /** Superblock version (0 for h5py's default and for files we write). */
  readonly superblockVersion: number;
  /** Where the superblock starts (after any user block). */
  readonly superblockOffset: number;
  /** The absolute end-of-file address the superblock records (`undefined` when not recorded). */
  readonly end?: number;
}

/**
 * Checks that `path` exists and starts like an HDF5 file whose recorded end lies within its size,
 * without involving HDF5 — whose own failures are noisy (`HDF5-DIAG` on stderr) and imprecise. This is
 * what turns an interrupted download into a one-line "truncated" error.
 */
export async function inspectHdf5File(path: string): Promise<Hdf5FileFacts> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch (caught) {
    if (caught instanceof Deno.errors.NotFound) {
      fail("input", `HDF5 file not found: ${path}`, "check the path, or download the dataset first");
    }
    throw new PipelineFailure(toPipelineError(caught, path));
  }
  try {
    const stat = await file.stat();
    if (stat.isDirectory) fail("input", `${path} is a directory, not an HDF5 file`);
    const size = stat.size;
    // The superblock sits at 0 or, after a user block, at 512, 1024, 2048, ... (HDF5 spec, "Superblock").
    for (let at = 0; at + 8 <= size; at = at === 0 ? 512 : at * 2) {
      const head = await readAt(file, at, Math.min(64, size - at), path);
      if (!startsWithSignature(head)) continue;
      const facts = parseSuperblock(head, at, size);
      if (facts.end !== undefined && facts.end > size) {
        fail(
          "input",
          `${path} is truncated: ${size} bytes on disk but its HDF5 superblock says the file is ${facts.end} bytes`,
          "the download or copy was interrupted; delete the file and download it again",
        );
      }
      return facts;
    }
    fail(
      "input",
      `${path} is not an HDF5 file (no HDF5 signature found in its ${size} bytes)`,
      "check the path; a failed download can leave an HTML error page under the dataset's name",
    );
  } finally {
    file.close();
  }
}

const HDF5_SIGNATURE = [0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a];

function startsWithSignature(bytes: Uint8Array): boolean {
  return bytes.length >= 8 && HDF5_SIGNATURE.every((b, i) => bytes[i] === b);
}

function parseSuperblock(head: Uint8Array, at: number, size: number): Hdf5FileFacts {
  const version = head[8];
  // Byte positions of "size of offsets" and of the base address, per superblock version (HDF5 spec).
  let offsetSize: number, baseAt: number;
  if (version === 0 || version === 1) [offsetSize, baseAt] = [head[13], version === 0 ? 24 : 28];
  else if (version === 2 || version === 3) [offsetSize, baseAt] = [head[9], 12];
  else return { size, superblockVersion: version, superblockOffset: at }; // newer: let HDF5 judge
  const field = (k: number) => readUint(head, baseAt + k * offsetSize, offsetSize);
  const base = field(0);
  const eof = field(2); // v0/1: base, free-space, EOF; v2/3: base, extension, EOF
  const undefinedAddress = 2 ** (8 * offsetSize) - 1;
  if (base === undefined || eof === undefined || eof >= undefinedAddress) {
    return { size, superblockVersion: version, superblockOffset: at };
  }
  return { size, superblockVersion: version, superblockOffset: at, end: base + eof };
}

/** Little-endian unsigned integer of `width` bytes (≤ 8; exact below 2^53), or undefined past the end. */
function readUint(bytes: Uint8Array, at: number, width: number): number | undefined {
  if (at + width > bytes.length) return undefined;
  let value = 0;
  for (let i = width - 1; i >= 0; i--) value = value * 256 + bytes[at + i];
  return value;
}

function openForReading(h5: H5Wasm, path: string): H5File {
  const file = new h5.File(path, "r");
  if (file.file_id < 0n) {
    fail(
      "input",
      `HDF5 could not open ${path} (corrupt or unsupported file; HDF5's diagnostics are on stderr)`,
      "delete the file and download or regenerate it",
    );
  }
  return file;
}

function readOpenFile(h5: H5Wasm, file: H5File, path: string): RawD4rlFile {
  const keys = [...file.keys()].sort();
  const datasets: Record<string, H5Array<Float32Array | Uint8Array>> = {};
  for (const key of D4RL_FLOAT_KEYS) {
    if (keys.includes(key)) datasets[key] = readDataset(h5, file, path, key, "float");
  }
  for (const key of D4RL_FLAG_KEYS) {
    if (keys.includes(key)) datasets[key] = readDataset(h5, file, path, key, "flag");
  }
  return { path, keys, datasets: datasets as RawD4rlDatasets, attrs: readRootAttrs(file) };
}

/** Names a stored HDF5 type the way numpy would, for dtype checks and messages. */
function dtypeName(h5: H5Wasm, meta: import("h5wasm").Metadata): string {
  const cls = h5.Module.H5T_class_t;
  if (meta.type === cls.H5T_FLOAT.value) return `float${meta.size * 8}`;
  if (meta.type === cls.H5T_INTEGER.value) return `${meta.signed ? "int" : "uint"}${meta.size * 8}`;
  if (meta.type === cls.H5T_ENUM.value && meta.enum_type) {
    const members = meta.enum_type.members;
    const isH5pyBool = Object.keys(members).length === 2 && members.FALSE === 0 && members.TRUE === 1;
    return isH5pyBool && meta.size === 1 ? "bool" : `enum${meta.size * 8}`;
  }
  if (meta.type === cls.H5T_STRING.value) return "string";
  if (meta.type === cls.H5T_COMPOUND.value) return "compound";
  return `hdf5-class-${meta.type}`;
}

function readDataset(
  h5: H5Wasm,
  file: H5File,
  path: string,
  key: string,
  want: "float" | "flag",
): H5Array<Float32Array> | H5Array<Uint8Array> {
  const entity = file.get(key);
  if (!(entity instanceof h5.Dataset)) {
    fail("input", `${path}: '${key}' is not a dataset`, "the file does not follow the D4RL layout");
  }
  const meta = entity.metadata;
  const dtype = dtypeName(h5, meta);
  const shape = meta.shape ?? [];
  const accepted = want === "float" ? ["float32", "float64"] : ["bool", "int8", "uint8"];
  if (!accepted.includes(dtype)) {
    fail(
      "input",
      `${path}: '${key}' has dtype ${dtype}; expected ${accepted.join(" or ")}`,
      "the file does not follow the D4RL layout",
    );
  }
  const bytes = readDatasetBytes(h5, file, path, key, meta.size * meta.total_size);
  if (dtype === "float32") return { data: new Float32Array(bytes.buffer, 0, meta.total_size), shape, dtype };
  if (dtype === "float64") {
    const wide = new Float64Array(bytes.buffer, 0, meta.total_size);
    const data = Float32Array.from(wide);
    // A finite float64 beyond float32's range would read as ±Infinity: name it for what it is.
    const over = data.findIndex((v, i) => !Number.isFinite(v) && Number.isFinite(wide[i]));
    if (over >= 0) {
      const width = shape.length > 1 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
      fail(
        "numeric",
        `${path}: '${key}' holds ${wide[over]} at row ${Math.floor(over / width)}${
          shape.length > 1 ? `, dim ${over % width}` : ""
        } (float64), which overflows float32 (largest ≈ 3.4e38)`,
        "the toolkit computes in float32: rescale the data, or fix the run that produced it",
      );
    }
    return { data, shape, dtype };
  }
  return { data: bytes, shape, dtype }; // 1-byte integers and h5py's bool enum: the bytes are the values
}

/**
 * Reads a whole dataset's bytes (in little-endian memory order) through the low-level call, because
 * h5wasm's `Dataset.value` ignores HDF5's status and would hand back uninitialised memory when, say, a
 * compressed chunk is corrupt.
 */
function readDatasetBytes(h5: H5Wasm, file: H5File, path: string, key: string, nbytes: number): Uint8Array {
  const module = h5.Module;
  const ptr = module._malloc(Math.max(nbytes, 1));
  if (ptr === 0) {
    fail("io", `${path}: cannot allocate ${nbytes} bytes in WebAssembly memory to read '${key}'`);
  }
  try {
    const status = module.get_dataset_data(file.file_id, key, null, null, null, BigInt(ptr));
    if (status < 0) {
      fail(
        "input",
        `${path}: HDF5 failed to read dataset '${key}' (corrupt data; HDF5's diagnostics are on stderr)`,
        "delete the file and download or regenerate it",
      );
    }
    return module.HEAPU8.slice(ptr, ptr + nbytes); // a copy: the wasm heap may grow and move
  } finally {
    module._free(ptr);
  }
}

function readRootAttrs(file: H5File): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  const attrs = file.attrs; // lazy getters: an attribute is only decoded when accessed
  for (const name of Object.keys(attrs)) {
    let value: unknown;
    try {
      value = attrs[name].json_value; // booleans for h5py bools, numbers for int64 (exact below 2^53)
    } catch {
      continue; // types we do not support (references, ...): skip, attributes are informational
    }
    const attrValue = asAttrValue(value);
    if (attrValue !== undefined) out[name] = attrValue;
  }
  return out;
}

function asAttrValue(value: unknown): AttrValue | undefined {
  if (typeof value === "string" || typeof value === "number" || typeof value === "boolean") return value;
  if (!Array.isArray(value)) return undefined;
  const flat: unknown[] = value.flat(Infinity);
  const homogeneous = flat.every((item) => typeof item === "string") ||
    flat.every((item) => typeof item === "number") || flat.every((item) => typeof item === "boolean");
  return homogeneous ? flat as AttrValue : undefined;
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/**
 * {@link writeAtomic} with its errors as `PipelineFailure`s naming `path`: `fill(tempPath)` produces
 * the file, which then replaces `path`; on any failure `path` is left exactly as it was.
 */
export async function atomicWrite(
  path: string,
  fill: (tempPath: string) => Promise<void> | void,
): Promise<void> {
  try {
    await writeAtomic(path, fill);
  } catch (caught) {
    throw caught instanceof PipelineFailure ? caught : new PipelineFailure(toPipelineError(caught, path));
  }
}

/**
 * Writes `data` as a D4RL-layout HDF5 file: `observations [n, obsDim]`, `actions [n, actDim]`,
 * `rewards [n]` (float32), `terminals [n]`, `timeouts [n]` (bool, as h5py writes them), and
 * `next_observations [n, obsDim]` when given, plus `attrs` on the root group.
 *
 * The write is atomic ({@link atomicWrite}) and verified: the temporary file is read back and compared
 * with `data` and `attrs` before it replaces `path`. Fails with "input" when the arrays disagree with
 * `n`/`obsDim`/`actDim`, a flag is not 0/1, or an attribute cannot be stored; with "io" when the
 * directory cannot be written; with "internal" when the written file does not read back identically.
 */
export async function writeD4rlFile(
  path: string,
  data: D4rlArrays,
  attrs: Readonly<Record<string, WritableAttr>> = {},
): Promise<void> {
  const planned = planDatasets(data, path);
  const plannedAttrs = Object.entries(attrs).map(([name, value]) => planAttr(name, value, path));
  const h5 = await loadH5wasm();
  await atomicWrite(path, async (tempPath) => {
    const headerAddresses = createFile(h5, tempPath, planned, plannedAttrs);
    const file = await Deno.open(tempPath, { read: true, write: true });
    try {
      for (const key of D4RL_FLAG_KEYS) {
        await patchInt8ToBoolEnum(file, headerAddresses[key], `${path}:${key}`);
      }
      await file.sync();
    } finally {
      file.close();
    }
    verifyWritten(h5, tempPath, path, planned, plannedAttrs);
  });
}

/**
 * Writes one-dimensional float datasets (float32 or float64, as the arrays are) and `attrs` on the root
 * group to a new HDF5 file — per-state values such as `log_density` and `weight`. Atomic and verified
 * like {@link writeD4rlFile}: the temporary file is read back and compared byte for byte before it
 * replaces `path`. Fails with "input" on an empty, non-float or badly named dataset or an attribute
 * that cannot be stored, "io" when the directory cannot be written, "internal" when the file does not
 * read back identically.
 */
export async function writeFloatDatasets(
  path: string,
  datasets: Readonly<Record<string, Float32Array | Float64Array>>,
  attrs: Readonly<Record<string, WritableAttr>> = {},
): Promise<void> {
  const entries = Object.entries(datasets);
  if (entries.length === 0) fail("input", `cannot write ${path}: no datasets given`);
  for (const [key, data] of entries) {
    if (key === "" || key.includes("/")) {
      fail(
        "input",
        `cannot write ${path}: invalid dataset name '${key}'`,
        "use a non-empty name without '/'",
      );
    }
    if (!(data instanceof Float32Array || data instanceof Float64Array) || data.length === 0) {
      fail("input", `cannot write ${path}: '${key}' must be a non-empty Float32Array or Float64Array`);
    }
  }
  const plannedAttrs = Object.entries(attrs).map(([name, value]) => planAttr(name, value, path));
  const h5 = await loadH5wasm();
  await atomicWrite(path, (tempPath) => {
    const file = new h5.File(tempPath, "x", { libver: ["earliest", "v110"] });
    if (file.file_id < 0n) fail("io", `cannot create ${tempPath} (HDF5's diagnostics are on stderr)`);
    try {
      for (const [key, data] of entries) file.create_dataset({ name: key, data, shape: [data.length] });
      for (const { name, payload, shape } of plannedAttrs) file.create_attribute(name, payload, shape);
    } finally {
      file.close();
    }
    const mismatch: (what: string) => never = (what) =>
      fail(
        "internal",
        `writing ${path}: ${what} did not read back as written`,
        "HDF5 rejected part of the write (its diagnostics are on stderr)",
      );
    const back = openForReading(h5, tempPath);
    try {
      const keys = [...back.keys()].sort();
      if (keys.join("\0") !== entries.map(([k]) => k).sort().join("\0")) {
        mismatch(`the key list [${keys.join(", ")}]`);
      }
      for (const [key, data] of entries) {
        const entity = back.get(key);
        if (!(entity instanceof h5.Dataset)) mismatch(`'${key}'`);
        const meta = entity.metadata;
        const dtype = dtypeName(h5, meta);
        const expected = data instanceof Float32Array ? "float32" : "float64";
        if (dtype !== expected || (meta.shape ?? []).join() !== String(data.length)) {
          mismatch(`'${key}' (dtype ${dtype})`);
        }
        const bytes = readDatasetBytes(h5, back, tempPath, key, meta.size * meta.total_size);
        if (!sameBytes(bytes, data)) mismatch(`'${key}' values`);
      }
      const got = readRootAttrs(back);
      if (Object.keys(got).sort().join("\0") !== plannedAttrs.map((a) => a.name).sort().join("\0")) {
        mismatch(`the attribute list [${Object.keys(got).sort().join(", ")}]`);
      }
      for (const { name, expected } of plannedAttrs) {
        if (!sameAttr(got[name], expected)) mismatch(`attribute '${name}'`);
      }
    } finally {
      back.close();
    }
  });
}

interface PlannedDataset {
  readonly key: string;
  readonly shape: number[];
  readonly dtype: "float32" | "bool";
  readonly data: Float32Array | Uint8Array;
}

function planDatasets(data: D4rlArrays, path: string): PlannedDataset[] {
  const { n, obsDim, actDim } = data;
  for (const [name, value] of [["n", n], ["obsDim", obsDim], ["actDim", actDim]] as const) {
    if (!Number.isSafeInteger(value) || value < 1) {
      fail("input", `cannot write ${path}: ${name} must be a positive integer, got ${value}`);
    }
  }
  const planned: PlannedDataset[] = [
    { key: "observations", shape: [n, obsDim], dtype: "float32", data: data.observations },
    { key: "actions", shape: [n, actDim], dtype: "float32", data: data.actions },
    { key: "rewards", shape: [n], dtype: "float32", data: data.rewards },
    { key: "terminals", shape: [n], dtype: "bool", data: data.terminals },
    { key: "timeouts", shape: [n], dtype: "bool", data: data.timeouts },
  ];
  if (data.nextObservations !== undefined) {
    planned.push({
      key: "next_observations",
      shape: [n, obsDim],
      dtype: "float32",
      data: data.nextObservations,
    });
  }
  for (const { key, shape, dtype, data: values } of planned) {
    const expected = shape.reduce((a, b) => a * b, 1);
    const arrayType = dtype === "float32" ? Float32Array : Uint8Array;
    if (!(values instanceof arrayType)) {
      fail("input", `cannot write ${path}: '${key}' must be a ${arrayType.name}`);
    }
    if (values.length !== expected) {
      fail(
        "input",
        `cannot write ${path}: '${key}' has ${values.length} values but shape [${
          shape.join(", ")
        }] needs ${expected}`,
        "check n, obsDim and actDim against the arrays",
      );
    }
    if (dtype === "bool") {
      const bad = values.findIndex((v) => v > 1);
      if (bad >= 0) {
        fail("input", `cannot write ${path}: '${key}'[${bad}] is ${values[bad]}; flags must be 0 or 1`);
      }
    }
  }
  return planned;
}

interface PlannedAttr {
  readonly name: string;
  /** The value as it will read back, for verification. */
  readonly expected: AttrValue;
  /** The value handed to h5wasm and the shape (`[]` for a scalar). */
  readonly payload: string | string[] | Int32Array | BigInt64Array | Float64Array;
  readonly shape: number[];
}

/** Numeric attributes live in the object header, which in this file format holds at most 64 KiB. */
const MAX_NUMERIC_ATTR_VALUES = 4096;

function planAttr(name: string, value: WritableAttr, path: string): PlannedAttr {
  if (name === "" || name.includes("/")) {
    fail(
      "input",
      `cannot write ${path}: invalid attribute name '${name}'`,
      "use a non-empty name without '/'",
    );
  }
  const scalar = !Array.isArray(value);
  const items: readonly unknown[] = scalar ? [value] : value as readonly unknown[];
  const shape = scalar ? [] : [items.length];
  if (items.length === 0) {
    fail("input", `cannot write ${path}: attribute '${name}' is an empty array`, "omit it or store a count");
  }
  if (items.every((v) => typeof v === "string")) {
    const strings = items as string[];
    return {
      name,
      expected: scalar ? strings[0] : [...strings],
      payload: scalar ? strings[0] : [...strings],
      shape,
    };
  }
  if (!items.every((v) => typeof v === "number")) {
    fail(
      "input",
      `cannot write ${path}: attribute '${name}' must be a string, a number or an array of one kind`,
    );
  }
  if (items.length > MAX_NUMERIC_ATTR_VALUES) {
    fail(
      "input",
      `cannot write ${path}: attribute '${name}' has ${items.length} numbers (at most ${MAX_NUMERIC_ATTR_VALUES} fit in an HDF5 object header)`,
      "store long series as a dataset or summarise them",
    );
  }
  const numbers = items as number[];
  const expected: AttrValue = scalar ? numbers[0] : [...numbers];
  const int32 = numbers.every((v) => Number.isInteger(v) && v >= -(2 ** 31) && v < 2 ** 31);
  const payload = int32
    ? Int32Array.from(numbers)
    : numbers.every((v) => Number.isSafeInteger(v))
    ? BigInt64Array.from(numbers, BigInt)
    : Float64Array.from(numbers);
  return { name, expected, payload, shape };
}

/** Creates the file with h5wasm; returns the object-header addresses of the flag datasets. */
function createFile(
  h5: H5Wasm,
  tempPath: string,
  planned: readonly PlannedDataset[],
  attrs: readonly PlannedAttr[],
): Record<string, number> {
  // "x" refuses to overwrite; ["earliest", "v110"] gives h5py's default format (superblock 0, v1 object
  // headers, which our boolean patch relies on) and keeps the file readable by HDF5 1.10.
  const file = new h5.File(tempPath, "x", { libver: ["earliest", "v110"] });
  if (file.file_id < 0n) fail("io", `cannot create ${tempPath} (HDF5's diagnostics are on stderr)`);
  const addresses: Record<string, number> = {};
  try {
    for (const { key, shape, dtype, data } of planned) {
      // Flags go in as int8 — the base type of h5py's bool enum — and are retyped after closing.
      const values = dtype === "bool" ? new Int8Array(data.buffer, data.byteOffset, data.length) : data;
      const dataset = file.create_dataset({ name: key, data: values, shape });
      if (dtype === "bool") {
        // An HDF5 object reference (hobj_ref_t) is the address of the object's header.
        const ref = Array.from(dataset.create_reference().ref_data as ArrayLike<number>);
        addresses[key] = ref.reduceRight((acc, byte) => acc * 256 + byte, 0);
      }
    }
    for (const { name, payload, shape } of attrs) file.create_attribute(name, payload, shape);
  } finally {
    file.close();
  }
  return addresses;
}

function verifyWritten(
  h5: H5Wasm,
  tempPath: string,
  path: string,
  planned: readonly PlannedDataset[],
  attrs: readonly PlannedAttr[],
): void {
  const mismatch: (what: string) => never = (what) =>
    fail(
      "internal",
      `writing ${path}: ${what} did not read back as written`,
      "HDF5 rejected part of the write (its diagnostics are on stderr); please report this with the data's shapes",
    );
  const file = openForReading(h5, tempPath);
  let raw: RawD4rlFile;
  try {
    raw = readOpenFile(h5, file, tempPath);
  } finally {
    file.close();
  }
  const expectedKeys = planned.map((p) => p.key).sort();
  if (raw.keys.join() !== expectedKeys.join()) mismatch(`the key list [${raw.keys.join(", ")}]`);
  for (const { key, shape, dtype, data } of planned) {
    const got = raw.datasets[key as keyof RawD4rlDatasets];
    if (got === undefined || got.dtype !== dtype || got.shape.join() !== shape.join()) {
      mismatch(`'${key}' (dtype ${got?.dtype}, shape [${got?.shape.join(", ")}])`);
    }
    if (!sameBytes(got.data, data)) mismatch(`'${key}' values`);
  }
  const gotNames = Object.keys(raw.attrs).sort();
  const wantNames = attrs.map((a) => a.name).sort();
  if (gotNames.join("\0") !== wantNames.join("\0")) mismatch(`the attribute list [${gotNames.join(", ")}]`);
  for (const { name, expected } of attrs) {
    if (!sameAttr(raw.attrs[name], expected)) mismatch(`attribute '${name}'`);
  }
}

function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.byteLength !== b.byteLength) return false;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

function sameAttr(got: AttrValue | undefined, want: AttrValue): boolean {
  if (Array.isArray(want)) {
    return Array.isArray(got) && got.length === want.length && want.every((w, i) => Object.is(got[i], w));
  }
  return Object.is(got, want);
}

// ---------------------------------------------------------------------------------------------
// Retyping int8 datasets as h5py booleans
// ---------------------------------------------------------------------------------------------

/** The datatype message h5wasm writes for int8: fixed-point, version 1, little-endian, signed, 1 byte, precision 8. */
const INT8_TYPE = Uint8Array.of(0x10, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00);

/**
 * h5py's boolean type, byte for byte as h5py writes it into a version-1 object header (taken from a
 * file written by h5py 3.7 / HDF5 1.10): an enum (class 8, version 1) of 2 members, 1 byte, over the
 * int8 type above, member names NUL-padded to 8 bytes, then the values 0 and 1, padded to 40 bytes.
 */
// deno-fmt-ignore
const BOOL_ENUM_TYPE = Uint8Array.of(
  0x18, 0x02, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // enum v1, 2 members; element size 1
  ...INT8_TYPE, // base type
  ...new TextEncoder().encode("FALSE\0\0\0"),
  ...new TextEncoder().encode("TRUE\0\0\0\0"),
  0x00, 0x01, 0x00, 0x00, // values FALSE = 0, TRUE = 1; padding
);

const MSG_NULL = 0x0000;
const MSG_DATATYPE = 0x0003;
const MSG_CONTINUATION = 0x0010;
const MSG_FLAG_CONSTANT = 0x01;
const V1_MESSAGE_HEADER = 8;

interface HeaderChunk {
  readonly address: number;
  readonly bytes: Uint8Array;
  dirty: boolean;
}

interface HeaderMessage {
  readonly chunk: HeaderChunk;
  readonly offset: number; // of the 8-byte message header within the chunk
  readonly type: number;
  readonly size: number; // of the message data
}

/**
 * Turns the int8 dataset whose version-1 object header is at `address` into an h5py boolean dataset,
 * in place, in a closed HDF5 file. The data bytes (0/1) are already what the enum stores; only the
 * datatype message changes, and it grows from 12 to 40 bytes. HDF5 gives every dataset header at least
 * 256 bytes, the rest as a NULL (free-space) message, so: the old datatype message becomes NULL, and the
 * new one is written at the start of a free NULL message, the remainder staying a (smaller) NULL message.
 * Version-1 headers have no checksum; their message count is updated. Anything unexpected — another
 * header version, another type, no room — fails with "internal" rather than guessing; the caller then
 * discards the file. The result is checked by reading it back with HDF5 ({@link writeD4rlFile}).
 */
async function patchInt8ToBoolEnum(file: Deno.FsFile, address: number, label: string): Promise<void> {
  const broken: (why: string) => never = (why) =>
    fail("internal", `cannot store ${label} as h5py booleans: ${why}`, "please report this; it is a bug");
  const prefix = await readAt(file, address, 16, label);
  if (prefix[0] !== 1) broken(`object header version ${prefix[0]} (expected 1)`);
  const view = new DataView(prefix.buffer);
  const messageCount = view.getUint16(2, true);
  const chunks: HeaderChunk[] = [
    {
      address: address + 16,
      bytes: await readAt(file, address + 16, view.getUint32(8, true), label),
      dirty: false,
    },
  ];
  const messages: HeaderMessage[] = [];
  for (let c = 0; c < chunks.length; c++) {
    const chunk = chunks[c];
    const data = new DataView(chunk.bytes.buffer);
    for (let at = 0; at + V1_MESSAGE_HEADER <= chunk.bytes.length;) {
      const type = data.getUint16(at, true);
      const size = data.getUint16(at + 2, true);
      if (at + V1_MESSAGE_HEADER + size > chunk.bytes.length) broken("a header message overruns its chunk");
      messages.push({ chunk, offset: at, type, size });
      if (type === MSG_CONTINUATION) {
        const next = Number(data.getBigUint64(at + 8, true));
        const length = Number(data.getBigUint64(at + 16, true));
        chunks.push({ address: next, bytes: await readAt(file, next, length, label), dirty: false });
      }
      at += V1_MESSAGE_HEADER + size;
    }
  }
  if (messages.length !== messageCount) {
    broken(`found ${messages.length} header messages, header says ${messageCount}`);
  }
  const types = messages.filter((m) => m.type === MSG_DATATYPE);
  if (types.length !== 1) broken(`found ${types.length} datatype messages`);
  const old = types[0];
  const oldBytes = old.chunk.bytes.subarray(
    old.offset + V1_MESSAGE_HEADER,
    old.offset + V1_MESSAGE_HEADER + 12,
  );
  if (old.size < 12 || !INT8_TYPE.every((b, i) => oldBytes[i] === b)) {
    broken("the dataset is not stored as int8");
  }
  const need = BOOL_ENUM_TYPE.length;
  const hole = messages.find((m) =>
    m.type === MSG_NULL && (m.size === need || m.size >= need + V1_MESSAGE_HEADER)
  );
  if (hole === undefined) broken(`no free space of ${need} bytes in the object header`);

  writeMessageHeader(old.chunk.bytes, old.offset, MSG_NULL, old.size, 0);
  old.chunk.bytes.fill(0, old.offset + V1_MESSAGE_HEADER, old.offset + V1_MESSAGE_HEADER + old.size);
  writeMessageHeader(hole.chunk.bytes, hole.offset, MSG_DATATYPE, need, MSG_FLAG_CONSTANT);
  hole.chunk.bytes.set(BOOL_ENUM_TYPE, hole.offset + V1_MESSAGE_HEADER);
  let count = messageCount;
  if (hole.size > need) {
    const rest = hole.offset + V1_MESSAGE_HEADER + need;
    writeMessageHeader(hole.chunk.bytes, rest, MSG_NULL, hole.size - need - V1_MESSAGE_HEADER, 0);
    count += 1;
  }
  old.chunk.dirty = hole.chunk.dirty = true;
  view.setUint16(2, count, true);
  await writeAt(file, address, prefix);
  for (const chunk of chunks) if (chunk.dirty) await writeAt(file, chunk.address, chunk.bytes);
}

function writeMessageHeader(bytes: Uint8Array, at: number, type: number, size: number, flags: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  view.setUint16(at, type, true);
  view.setUint16(at + 2, size, true);
  bytes.fill(0, at + 4, at + 8);
  bytes[at + 4] = flags;
}

// ---------------------------------------------------------------------------------------------
// Positioned file I/O
// ---------------------------------------------------------------------------------------------

async function readAt(
  file: Deno.FsFile,
  position: number,
  length: number,
  label: string,
): Promise<Uint8Array> {
  await file.seek(position, Deno.SeekMode.Start);
  const bytes = new Uint8Array(length);
  for (let got = 0; got < length;) {
    const n = await file.read(bytes.subarray(got));
    if (n === null) fail("input", `${label}: unexpected end of file at byte ${position + got}`);
    got += n;
  }
  return bytes;
}

async function writeAt(file: Deno.FsFile, position: number, bytes: Uint8Array): Promise<void> {
  await file.seek(position, Deno.SeekMode.Start);
  for (let written = 0; written < bytes.length;) written += await file.write(bytes.subarray(written));
}
