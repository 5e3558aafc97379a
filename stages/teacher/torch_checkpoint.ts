/**
 * Reading PyTorch checkpoints without Python.
 *
 * `torch.save` (since PyTorch 1.6) writes a zip archive, entries stored uncompressed (and aligned
 * to 64 bytes with padding in the extra field), all under one directory named after the file:
 *
 *   <name>/data.pkl      the object graph, pickle protocol 2
 *   <name>/data/<key>    raw little-endian bytes of each tensor storage
 *   <name>/version       the serialization format version; newer versions add <name>/byteorder
 *
 * In `data.pkl`, a tensor is `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)`
 * whose storage is a persistent id `('storage', torch.FloatStorage, '<key>', 'cpu', numel)`;
 * parameters wrap that in `_rebuild_parameter`; state dicts are `collections.OrderedDict`s.
 * @module
 */

import { fail } from "../../core/errors.ts";
import { readZipDirectory, readZipEntry, type ZipEntry } from "./zip.ts";
import { PyGlobal, unpickle } from "./pickle.ts";

/** A tensor storage referenced by a persistent id; its bytes live in `data/<key>`. */
export interface StorageRef {
  /** Its entry name under `data/`. */
  readonly key: string;
  /** Element type. */
  readonly dtype: TorchDtype;
  /** Number of elements, as declared. */
  readonly numel: number;
}

/** Element types of tensor storages. */
export type TorchDtype =
  | "float32"
  | "float64"
  | "float16"
  | "bfloat16"
  | "int64"
  | "int32"
  | "int16"
  | "int8"
  | "uint8"
  | "bool";

const STORAGE_DTYPES: Readonly<Record<string, TorchDtype>> = {
  FloatStorage: "float32",
  DoubleStorage: "float64",
  HalfStorage: "float16",
  BFloat16Storage: "bfloat16",
  LongStorage: "int64",
  IntStorage: "int32",
  ShortStorage: "int16",
  CharStorage: "int8",
  ByteStorage: "uint8",
  BoolStorage: "bool",
};
const DTYPE_BYTES: Readonly<Record<TorchDtype, number>> = {
  float32: 4,
  float64: 8,
  float16: 2,
  bfloat16: 2,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint8: 1,
  bool: 1,
};

/** A tensor as pickled: a strided view of a storage. */
export class TorchTensor {
  /** A view of `storage` from `offset` with `shape` and `stride` (in elements). */
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly shape: readonly number[],
    readonly stride: readonly number[],
    readonly isParameter = false,
  ) {}
  /** Number of elements. */
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }
}
/** A loaded checkpoint: the object graph, with tensors resolvable to numbers. */
export interface TorchCheckpoint {
  /** The unpickled object graph (Maps for dicts, TorchTensors for tensors). */
  readonly root: unknown;
  /** The tensor's values as float32, row-major (any dtype and strides). */
  values(t: TorchTensor): Float32Array;
}

function half(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
  if (e === 0) return s * f * 2 ** -24;
  if (e === 31) return f ? NaN : s * Infinity;
  return s * (1 + f / 1024) * 2 ** (e - 15);
}

/**
 * How many bytes reading a checkpoint of `fileBytes` bytes may allocate, inflated entries and the
 * float32 values of any one tensor each: 16 times the file plus 64 MiB. A checkpoint as torch.save
 * writes it (stored entries) allocates about its own size; a re-zipped one (deflated float weights
 * compress little) not much more; a zip bomb or a stride-0 view of a huge shape far more.
 */
export function checkpointMemoryLimit(fileBytes: number): number {
  return 16 * fileBytes + 64 * 2 ** 20;
}

function mib(n: number): string {
  return `${(n / 2 ** 20).toFixed(1)} MiB`;
}

/**
 * Reads a `torch.save` zip archive (`file` is used in messages). Memory is bounded by
 * {@link checkpointMemoryLimit}: inflated entries are refused by their declared sizes before they
 * are inflated, and every tensor is checked against its storage's length (offset, shape and strides)
 * and against the limit when it is unpickled, before anything is allocated for it.
 */
export async function readTorchCheckpoint(bytes: Uint8Array, file: string): Promise<TorchCheckpoint> {
  if (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1] <= 5) {
    fail(
      "input",
      `${file} is not a torch.save zip checkpoint: it is a bare pickle (the legacy pre-1.6 format)`,
      "re-save it with torch.save from PyTorch ≥ 1.6 (the default zip format)",
    );
  }
  const entries = readZipDirectory(bytes, file);
  const limit = checkpointMemoryLimit(bytes.length);
  let inflated = 0;
  const read = (entry: ZipEntry): Promise<Uint8Array> => {
    if (entry.method !== 0) {
      inflated += entry.size;
      if (inflated > limit) {
        fail(
          "input",
          `${file}: ${entry.name} declares ${mib(entry.size)} inflated (${
            mib(inflated)
          } in all so far), more than the ${mib(limit)} allowed for a ${mib(bytes.length)} checkpoint`,
          "a checkpoint whose entries inflate to many times its size is refused; re-save it with torch.save",
        );
      }
    }
    return readZipEntry(bytes, entry, file);
  };
  const pkl = [...entries.keys()].find((n) => n === "data.pkl" || /^[^/]+\/data\.pkl$/.test(n));
  if (!pkl) {
    fail(
      "input",
      `${file} has no data.pkl: not a torch.save zip checkpoint`,
      "re-save it with torch.save from PyTorch ≥ 1.6",
    );
  }
  const prefix = pkl.slice(0, pkl.length - "data.pkl".length);
  const byteorder = entries.get(`${prefix}byteorder`);
  if (byteorder && new TextDecoder().decode(await read(byteorder)).trim() !== "little") {
    fail("input", `${file} stores big-endian tensors`, "re-save it on a little-endian machine");
  }
  const storageKeys = new Set<string>();
  const root = unpickle(await read(entries.get(pkl)!), {
    persistentLoad(pid) {
      if (!Array.isArray(pid) || pid[0] !== "storage") {
        fail("input", `${file}: unknown persistent id ${JSON.stringify(pid)}`);
      }
      const [, type, key, , numel] = pid as [string, PyGlobal, string, string, number];
      const dtype = type instanceof PyGlobal ? STORAGE_DTYPES[type.name] : undefined;
      if (!dtype) {
        fail("input", `${file}: storage type ${String((type as PyGlobal)?.qualified)} is not supported`);
      }
      const name = `${prefix}data/${key}`;
      const entry = entries.get(name);
      if (!entry) {
        fail(
          "input",
          `${file}: tensor storage ${name} is missing from the archive`,
          "the checkpoint is incomplete",
        );
      }
      if (!Number.isSafeInteger(numel) || numel < 0 || entry.size < numel * DTYPE_BYTES[dtype]) {
        fail(
          "input",
          `${file}: ${name} holds ${entry.size} bytes, fewer than its declared ${numel} ${dtype} values (${
            numel * DTYPE_BYTES[dtype]
          } bytes)`,
          "the checkpoint is damaged or crafted; re-save it with torch.save",
        );
      }
      storageKeys.add(String(key));
      return { key: String(key), dtype, numel } satisfies StorageRef;
    },
    callGlobal(fn, args) {
      switch (fn.qualified) {
        case "torch._utils._rebuild_tensor_v2":
        case "torch._utils._rebuild_tensor": {
          const [storage, offset, shape, stride] = args as [StorageRef, number, number[], number[]];
          checkView(storage, offset, shape, stride, `${prefix}data/${storage?.key}`);
          return new TorchTensor(storage, offset, shape, stride);
        }
        case "torch._utils._rebuild_parameter":
        case "torch._utils._rebuild_parameter_with_state": {
          const t = args[0] as TorchTensor;
          return new TorchTensor(t.storage, t.offset, t.shape, t.stride, true);
        }
        default:
          return undefined;
      }
    },
  });
  /**
   * A view of `storage` must stay inside it (its highest element `offset + Σ (shape_d − 1)·stride_d`
   * below the storage's length) and its values must fit the memory limit, before anything is
   * allocated for it.
   */
  function checkView(
    storage: StorageRef,
    offset: unknown,
    shape: unknown,
    stride: unknown,
    name: string,
  ): void {
    const bad = (why: string): never =>
      fail(
        "input",
        `${file}: a tensor on ${name} ${why}`,
        "the checkpoint is damaged or crafted; re-save it with torch.save",
      );
    if (typeof storage !== "object" || storage === null || !("numel" in storage)) bad("has no storage");
    const isIndex = (x: unknown): x is number => Number.isSafeInteger(x) && (x as number) >= 0;
    if (!isIndex(offset)) bad(`has offset ${String(offset)}`);
    if (!Array.isArray(shape) || !shape.every(isIndex)) bad(`has shape ${JSON.stringify(shape)}`);
    if (!Array.isArray(stride) || stride.length !== (shape as number[]).length || !stride.every(isIndex)) {
      bad(`has strides ${JSON.stringify(stride)} for shape ${JSON.stringify(shape)}`);
    }
    return checkExtent(storage, offset as number, shape as number[], stride as number[], bad);
  }
  function checkExtent(
    storage: StorageRef,
    offset: number,
    shape: number[],
    stride: number[],
    bad: (why: string) => never,
  ): void {
    const numel = shape.reduce((a, b) => a * b, 1);
    if (numel === 0) return;
    const last = shape.reduce((at, n, d) => at + (n - 1) * stride[d], offset);
    if (last >= storage.numel) {
      bad(
        `(offset ${offset}, shape [${shape.join(", ")}], strides [${
          stride.join(", ")
        }]) reads element ${last}, past the storage's ${storage.numel} ${storage.dtype} values`,
      );
    }
    if (4 * numel > limit) {
      bad(
        `of shape [${shape.join(", ")}] (strides [${stride.join(", ")}]) has ${numel} values (${
          mib(4 * numel)
        } as float32), more than the ${mib(limit)} allowed for a ${mib(bytes.length)} checkpoint`,
      );
    }
  }
  // Every storage the object graph references, read now (stored in place, or inflated) and
  // checked against its CRC-32, so that `values` is synchronous and a damaged archive fails early.
  const storages = new Map<string, Uint8Array>();
  for (const key of storageKeys) {
    const entry = entries.get(`${prefix}data/${key}`);
    if (!entry) {
      fail(
        "input",
        `${file}: tensor storage data/${key} is missing from the archive`,
        "the checkpoint is incomplete",
      );
    }
    storages.set(key, await read(entry));
  }
  return {
    root,
    values(t) {
      const raw = storages.get(t.storage.key)!;
      const width = DTYPE_BYTES[t.storage.dtype];
      if (raw.length < t.storage.numel * width) {
        fail(
          "input",
          `${file}: data/${t.storage.key} holds ${raw.length} bytes, fewer than ${t.storage.numel} ${t.storage.dtype} values`,
        );
      }
      const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      const read = (i: number): number => {
        const at = i * width;
        switch (t.storage.dtype) {
          case "float32":
            return dv.getFloat32(at, true);
          case "float64":
            return dv.getFloat64(at, true);
          case "float16":
            return half(dv.getUint16(at, true));
          case "bfloat16":
            return new Float32Array(new Uint32Array([dv.getUint16(at, true) << 16]).buffer)[0];
          case "int64":
            return Number(dv.getBigInt64(at, true));
          case "int32":
            return dv.getInt32(at, true);
          case "int16":
            return dv.getInt16(at, true);
          case "int8":
            return dv.getInt8(at);
          default:
            return dv.getUint8(at);
        }
      };
      const n = t.numel;
      const out = new Float32Array(n);
      const rank = t.shape.length;
      const index = new Array(rank).fill(0);
      for (let k = 0; k < n; k++) {
        let at = t.offset;
        for (let d = 0; d < rank; d++) at += index[d] * t.stride[d];
        if (at >= t.storage.numel) {
          fail("input", `${file}: a tensor reads past the end of storage data/${t.storage.key}`);
        }
        out[k] = read(at);
        for (let d = rank - 1; d >= 0; d--) {
          if (++index[d] < t.shape[d]) break;
          index[d] = 0;
        }
      }
      return out;
    },
  };
}
