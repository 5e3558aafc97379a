/**
 * Reading HDF5 files through h5wasm: starting h5wasm, checking a file's superblock before HDF5 sees
 * it, and reading the D4RL datasets and root attributes with HDF5's status checked. The module
 * header of `hdf5.ts` explains the h5wasm quirks this works around.
 * @module
 */

import process from "node:process";
import { fail, PipelineFailure, toPipelineError } from "../core/errors.ts";

/** The h5wasm module, as {@link loadH5wasm} hands it out. */
export type H5Wasm = typeof import("h5wasm");
/** An open h5wasm file. */
export type H5File = InstanceType<H5Wasm["File"]>;

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

/** Opens `path` read-only; fails with "input" when HDF5 cannot open it. */
export function openForReading(h5: H5Wasm, path: string): H5File {
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

/** Reads the D4RL datasets and the root attributes of an open file. */
export function readOpenFile(h5: H5Wasm, file: H5File, path: string): RawD4rlFile {
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
export function dtypeName(h5: H5Wasm, meta: import("h5wasm").Metadata): string {
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

/**
 * Reads one dataset (`key` may be a path inside the file, e.g. `episode_0/actions`) as float32
 * (`want` "float": float32 or float64 stored) or as 0/1 bytes ("flag": h5py bool, int8, uint8).
 * Fails with "input" naming the file, the key and the dtype otherwise; `layout` names the expected
 * layout in the hint.
 */
export function readDataset(
  h5: H5Wasm,
  file: H5File,
  path: string,
  key: string,
  want: "float" | "flag",
  layout = "D4RL",
): H5Array<Float32Array> | H5Array<Uint8Array> {
  const entity = file.get(key);
  if (!(entity instanceof h5.Dataset)) {
    fail("input", `${path}: '${key}' is not a dataset`, `the file does not follow the ${layout} layout`);
  }
  const meta = entity.metadata;
  const dtype = dtypeName(h5, meta);
  const shape = meta.shape ?? [];
  const accepted = want === "float" ? ["float32", "float64"] : ["bool", "int8", "uint8"];
  if (!accepted.includes(dtype)) {
    fail(
      "input",
      `${path}: '${key}' has dtype ${dtype}; expected ${accepted.join(" or ")}`,
      `the file does not follow the ${layout} layout`,
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
export function readDatasetBytes(
  h5: H5Wasm,
  file: H5File,
  path: string,
  key: string,
  nbytes: number,
): Uint8Array {
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

/** The root attributes of supported types (others are skipped: attributes are informational). */
export function readRootAttrs(file: H5File): Record<string, AttrValue> {
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
// Positioned file I/O
// ---------------------------------------------------------------------------------------------

/** Reads exactly `length` bytes at `position`; fails with "input" at an early end of file. */
export async function readAt(
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
