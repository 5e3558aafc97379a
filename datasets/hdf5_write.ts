/**
 * Writing HDF5 files through h5wasm: D4RL-layout files (flags as h5py booleans) and files of
 * one-dimensional float datasets, each atomic and read back before it replaces its target.
 * @module
 */

import { writeAtomic } from "../core/atomic.ts";
import { fail, PipelineFailure, toPipelineError } from "../core/errors.ts";
import { patchInt8ToBoolEnum } from "./hdf5_bool.ts";
import {
  type AttrValue,
  D4RL_FLAG_KEYS,
  type D4rlArrays,
  dtypeName,
  type H5Wasm,
  loadH5wasm,
  openForReading,
  type RawD4rlDatasets,
  type RawD4rlFile,
  readDatasetBytes,
  readOpenFile,
  readRootAttrs,
  type WritableAttr,
} from "./hdf5_read.ts";

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
