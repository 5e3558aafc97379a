/**
 * Reading PyTorch checkpoints without Python, and turning the authors' CORL Cal-QL checkpoints into
 * teachers.
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
 *
 * The unpickler here builds data only: it never runs code. Python classes it does not know (a
 * pickled `nn.Module` such as CORL's `Scalar`, optimizer states) become inert {@link PyObject}s.
 * @module
 */

import { fail } from "../../core/errors.ts";
import { fromTorchLinear, type MlpWeights } from "../../numerics/mlp.ts";
import type { EnvName } from "../../envs/specs.ts";
import { CORL_GAUSSIAN_HEAD, TEACHER_FORMAT, TEACHER_FORMAT_VERSION, type TeacherArtifact } from "./model.ts";

// ---------------------------------------------------------------------------------------------
// Zip
// ---------------------------------------------------------------------------------------------

/** One file of a zip archive. */
export interface ZipEntry {
  readonly name: string;
  readonly method: number;
  readonly crc32: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly dataOffset: number;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (zip's checksum). */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Lists the entries of a zip archive from its central directory (zip64 included). */
export function readZipDirectory(bytes: Uint8Array, what = "the file"): Map<string, ZipEntry> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (why: string): never =>
    fail(
      "input",
      `${what} is not a readable zip archive (${why})`,
      "give a checkpoint written by torch.save (PyTorch ≥ 1.6)",
    );
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 65535); i--) {
    if (view.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) bad("no end-of-central-directory record; truncated?");
  let count = view.getUint16(eocd + 10, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || cdOffset === 0xffffffff) {
    const locator = eocd - 20;
    if (locator < 0 || view.getUint32(locator, true) !== 0x07064b50) bad("zip64 locator missing");
    const z64 = Number(view.getBigUint64(locator + 8, true));
    if (z64 + 56 > bytes.length || view.getUint32(z64, true) !== 0x06064b50) bad("zip64 record missing");
    count = Number(view.getBigUint64(z64 + 32, true));
    cdOffset = Number(view.getBigUint64(z64 + 48, true));
  }
  const entries = new Map<string, ZipEntry>();
  let p = cdOffset;
  for (let e = 0; e < count; e++) {
    if (p + 46 > bytes.length || view.getUint32(p, true) !== 0x02014b50) {
      bad(`central directory entry ${e} is damaged`);
    }
    const method = view.getUint16(p + 10, true);
    const crc = view.getUint32(p + 16, true);
    let compressedSize = view.getUint32(p + 20, true);
    let size = view.getUint32(p + 24, true);
    const nameLength = view.getUint16(p + 28, true);
    const extraLength = view.getUint16(p + 30, true);
    const commentLength = view.getUint16(p + 32, true);
    let localOffset = view.getUint32(p + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLength));
    // Zip64 extended information: the fields saturated at 0xffffffff, in this order.
    let x = p + 46 + nameLength;
    const extraEnd = x + extraLength;
    while (x + 4 <= extraEnd) {
      const id = view.getUint16(x, true), len = view.getUint16(x + 2, true);
      if (id === 0x0001) {
        let q = x + 4;
        if (size === 0xffffffff) (size = Number(view.getBigUint64(q, true))), (q += 8);
        if (compressedSize === 0xffffffff) (compressedSize = Number(view.getBigUint64(q, true))), (q += 8);
        if (localOffset === 0xffffffff) localOffset = Number(view.getBigUint64(q, true));
      }
      x += 4 + len;
    }
    if (localOffset + 30 > bytes.length || view.getUint32(localOffset, true) !== 0x04034b50) {
      bad(`local header of ${name} is damaged`);
    }
    const dataOffset = localOffset + 30 + view.getUint16(localOffset + 26, true) +
      view.getUint16(localOffset + 28, true);
    if (dataOffset + compressedSize > bytes.length) bad(`${name} runs past the end of the file; truncated?`);
    entries.set(name, { name, method, crc32: crc, compressedSize, size, dataOffset });
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** The bytes of one entry (stored, or deflated), checked against its CRC-32. */
export async function readZipEntry(
  bytes: Uint8Array,
  entry: ZipEntry,
  what = "the archive",
): Promise<Uint8Array> {
  const raw = bytes.subarray(entry.dataOffset, entry.dataOffset + entry.compressedSize);
  let data: Uint8Array;
  if (entry.method === 0) data = raw;
  else if (entry.method === 8) {
    const stream = new Blob([raw.slice()]).stream().pipeThrough(new DecompressionStream("deflate-raw"));
    data = new Uint8Array(await new Response(stream).arrayBuffer());
  } else {
    return fail(
      "input",
      `${what}: ${entry.name} uses zip compression method ${entry.method}`,
      "only stored and deflated entries are supported",
    );
  }
  if (data.length !== entry.size || crc32(data) !== entry.crc32) {
    fail(
      "checksum",
      `${what}: ${entry.name} fails its CRC-32 check`,
      "the checkpoint is damaged; copy it again",
    );
  }
  return data;
}

// ---------------------------------------------------------------------------------------------
// Pickle
// ---------------------------------------------------------------------------------------------

/** A Python global (`module.name`) referenced by a pickle: a class or a function, never called. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  /** `module.name`. */
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An instance of a Python class this unpickler does not model: its class, arguments and state. */
export class PyObject {
  constructor(readonly cls: PyGlobal, readonly args: readonly unknown[], public state: unknown = undefined) {}
}

/** A tensor storage referenced by a persistent id; its bytes live in `data/<key>`. */
export interface StorageRef {
  readonly key: string;
  readonly dtype: TorchDtype;
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

/**
 * Unpickles `bytes` (protocols 0–5, no out-of-band buffers). `persistentLoad` resolves persistent
 * ids; `callGlobal` may model a known callable (return `undefined` to fall back to a PyObject).
 */
export function unpickle(
  bytes: Uint8Array,
  hooks: {
    readonly persistentLoad: (pid: unknown) => unknown;
    readonly callGlobal?: (fn: PyGlobal, args: unknown[]) => unknown;
  },
): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const latin1 = new TextDecoder("latin1");
  const utf8 = new TextDecoder();
  const stack: unknown[] = [];
  const marks: number[] = [];
  const memo = new Map<number, unknown>();
  let p = 0;
  const need = (n: number) => {
    if (p + n > bytes.length) {
      fail("input", `pickle data ends early (byte ${p} of ${bytes.length})`, "the checkpoint is truncated");
    }
  };
  const u8 = () => (need(1), bytes[p++]);
  const u16 = () => (need(2), (p += 2), view.getUint16(p - 2, true));
  const u32 = () => (need(4), (p += 4), view.getUint32(p - 4, true));
  const i32 = () => (need(4), (p += 4), view.getInt32(p - 4, true));
  const u64 = () => (need(8), (p += 8), Number(view.getBigUint64(p - 8, true)));
  const take = (n: number) => (need(n), (p += n), bytes.subarray(p - n, p));
  const line = () => {
    const end = bytes.indexOf(0x0a, p);
    if (end < 0) fail("input", "pickle text line without newline");
    const s = latin1.decode(bytes.subarray(p, end));
    p = end + 1;
    return s;
  };
  const popMark = (): unknown[] => {
    const m = marks.pop();
    if (m === undefined) fail("input", "pickle data pops a mark that was never set");
    return stack.splice(m);
  };
  const top = () => stack[stack.length - 1];
  const longFrom = (b: Uint8Array): number => {
    if (b.length === 0) return 0;
    let v = 0n;
    for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
    if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
    return Number(v);
  };
  const setItem = (target: unknown, k: unknown, v: unknown) => {
    if (target instanceof Map) target.set(k, v);
    else if (target instanceof PyObject) {
      if (!(target.state instanceof Map)) target.state = new Map();
      (target.state as Map<unknown, unknown>).set(k, v);
    } else fail("input", "pickle SETITEM on a value that is not a dict");
  };
  const call = (fn: unknown, args: unknown[]): unknown => {
    if (!(fn instanceof PyGlobal)) return fail("input", "pickle REDUCE calls something that is not a global");
    const modelled = hooks.callGlobal?.(fn, args);
    if (modelled !== undefined) return modelled;
    switch (fn.qualified) {
      case "collections.OrderedDict":
      case "builtins.dict":
      case "__builtin__.dict":
        return new Map(
          args[0] instanceof Map ? args[0] : Array.isArray(args[0]) ? (args[0] as [unknown, unknown][]) : [],
        );
      case "builtins.set":
      case "__builtin__.set":
      case "builtins.frozenset":
      case "__builtin__.frozenset":
        return new Set(Array.isArray(args[0]) ? args[0] : []);
      case "builtins.list":
      case "__builtin__.list":
        return Array.isArray(args[0]) ? [...args[0]] : [];
      case "copyreg._reconstructor":
        return new PyObject(args[0] as PyGlobal, args.slice(1));
      default:
        return new PyObject(fn, args);
    }
  };
  for (;;) {
    const at = p;
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        u8();
        break;
      case 0x95: // FRAME
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) fail("input", `pickle STOP with ${stack.length} values on the stack`);
        return stack[0];
      case 0x28: // MARK
        marks.push(stack.length);
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push([]);
        break;
      case 0x74: // TUPLE
        stack.push(popMark());
        break;
      case 0x85: // TUPLE1
        stack.push(stack.splice(-1));
        break;
      case 0x86: // TUPLE2
        stack.push(stack.splice(-2));
        break;
      case 0x87: // TUPLE3
        stack.push(stack.splice(-3));
        break;
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x61: { // APPEND
        const v = stack.pop();
        (top() as unknown[]).push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        const list = top();
        if (Array.isArray(list)) list.push(...items);
        else if (list instanceof Set) items.forEach((i) => list.add(i));
        else fail("input", "pickle APPENDS on a value that is not a list");
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: { // DICT
        const items = popMark();
        const m = new Map();
        for (let i = 0; i + 1 < items.length; i += 2) m.set(items[i], items[i + 1]);
        stack.push(m);
        break;
      }
      case 0x73: { // SETITEM
        const v = stack.pop(), k = stack.pop();
        setItem(top(), k, v);
        break;
      }
      case 0x75: { // SETITEMS
        const items = popMark();
        const target = top();
        for (let i = 0; i + 1 < items.length; i += 2) setItem(target, items[i], items[i + 1]);
        break;
      }
      case 0x8f: // EMPTY_SET
        stack.push(new Set());
        break;
      case 0x90: { // ADDITEMS
        const items = popMark();
        const s = top() as Set<unknown>;
        items.forEach((i) => s.add(i));
        break;
      }
      case 0x91: // FROZENSET
        stack.push(new Set(popMark()));
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x8a: // LONG1
        stack.push(longFrom(take(u8())));
        break;
      case 0x8b: // LONG4
        stack.push(longFrom(take(u32())));
        break;
      case 0x47: // BINFLOAT (big-endian)
        need(8);
        stack.push(view.getFloat64(p, false));
        p += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(utf8.decode(take(u32())));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(utf8.decode(take(u8())));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(utf8.decode(take(u64())));
        break;
      case 0x54: // BINSTRING
        stack.push(latin1.decode(take(i32())));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(latin1.decode(take(u8())));
        break;
      case 0x42: // BINBYTES
        stack.push(take(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(take(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(take(u64()).slice());
        break;
      case 0x49: { // INT (text; 00/01 are False/True)
        const s = line();
        stack.push(s === "00" ? false : s === "01" ? true : Number(s));
        break;
      }
      case 0x4c: // LONG (text)
        stack.push(Number(line().replace(/L$/, "")));
        break;
      case 0x46: // FLOAT (text)
        stack.push(Number(line()));
        break;
      case 0x53: // STRING (text, quoted)
        stack.push(line().replace(/^(['"])(.*)\1$/, "$2"));
        break;
      case 0x56: // UNICODE (text)
        stack.push(line());
        break;
      case 0x63: { // GLOBAL
        const module = line(), name = line();
        stack.push(new PyGlobal(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = stack.pop() as string, module = stack.pop() as string;
        stack.push(new PyGlobal(module, name));
        break;
      }
      case 0x52: { // REDUCE
        const args = stack.pop() as unknown[];
        const fn = stack.pop();
        stack.push(call(fn, args));
        break;
      }
      case 0x81: { // NEWOBJ
        const args = stack.pop() as unknown[];
        const cls = stack.pop() as PyGlobal;
        stack.push(cls.qualified === "collections.OrderedDict" ? new Map() : new PyObject(cls, args));
        break;
      }
      case 0x92: { // NEWOBJ_EX
        stack.pop();
        const args = stack.pop() as unknown[];
        const cls = stack.pop() as PyGlobal;
        stack.push(new PyObject(cls, args));
        break;
      }
      case 0x62: { // BUILD
        const state = stack.pop();
        const obj = top();
        if (obj instanceof PyObject) obj.state = state;
        // BUILD on a dict (an OrderedDict's `_metadata`) or a tensor (its hooks) carries nothing we use.
        break;
      }
      case 0x51: // BINPERSID
        stack.push(hooks.persistentLoad(stack.pop()));
        break;
      case 0x50: // PERSID
        stack.push(hooks.persistentLoad(line()));
        break;
      case 0x71: // BINPUT
        memo.set(u8(), top());
        break;
      case 0x72: // LONG_BINPUT
        memo.set(u32(), top());
        break;
      case 0x70: // PUT
        memo.set(Number(line()), top());
        break;
      case 0x94: // MEMOIZE
        memo.set(memo.size, top());
        break;
      case 0x68: // BINGET
        stack.push(memo.get(u8()));
        break;
      case 0x6a: // LONG_BINGET
        stack.push(memo.get(u32()));
        break;
      case 0x67: // GET
        stack.push(memo.get(Number(line())));
        break;
      case 0x30: // POP
        stack.pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      default:
        fail(
          "input",
          `unsupported pickle opcode 0x${op.toString(16).padStart(2, "0")} at byte ${at}`,
          "is this a torch.save checkpoint?",
        );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// torch.save files
// ---------------------------------------------------------------------------------------------

/** A loaded checkpoint: the object graph, with tensors resolvable to numbers. */
export interface TorchCheckpoint {
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

/** Reads a `torch.save` zip archive (`file` is used in messages). */
export async function readTorchCheckpoint(bytes: Uint8Array, file: string): Promise<TorchCheckpoint> {
  if (bytes.length >= 2 && bytes[0] === 0x80 && bytes[1] <= 5) {
    fail(
      "input",
      `${file} is not a torch.save zip checkpoint: it is a bare pickle (the legacy pre-1.6 format)`,
      "re-save it with torch.save from PyTorch ≥ 1.6 (the default zip format)",
    );
  }
  const entries = readZipDirectory(bytes, file);
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
  if (byteorder && new TextDecoder().decode(await readZipEntry(bytes, byteorder, file)).trim() !== "little") {
    fail("input", `${file} stores big-endian tensors`, "re-save it on a little-endian machine");
  }
  const storageKeys = new Set<string>();
  const root = unpickle(await readZipEntry(bytes, entries.get(pkl)!, file), {
    persistentLoad(pid) {
      if (!Array.isArray(pid) || pid[0] !== "storage") {
        fail("input", `${file}: unknown persistent id ${JSON.stringify(pid)}`);
      }
      const [, type, key, , numel] = pid as [string, PyGlobal, string, string, number];
      const dtype = STORAGE_DTYPES[type.name];
      if (!dtype) fail("input", `${file}: storage type ${type.qualified} is not supported`);
      storageKeys.add(String(key));
      return { key: String(key), dtype, numel } satisfies StorageRef;
    },
    callGlobal(fn, args) {
      switch (fn.qualified) {
        case "torch._utils._rebuild_tensor_v2":
        case "torch._utils._rebuild_tensor": {
          const [storage, offset, shape, stride] = args as [StorageRef, number, number[], number[]];
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
    storages.set(key, await readZipEntry(bytes, entry, file));
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

// ---------------------------------------------------------------------------------------------
// CORL Cal-QL checkpoints → teacher
// ---------------------------------------------------------------------------------------------

/** What the importer knows besides the checkpoint. */
export interface CorlImportOptions {
  /** Shown in messages and stored as the artifact's source. */
  readonly file: string;
  readonly env: EnvName | null;
  /** The dataset's statistics (the networks were trained on normalized states); else identity. */
  readonly stateMean?: Float32Array;
  readonly stateStd?: Float32Array;
  readonly maxAction?: number;
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * The `nn.Sequential` of `Linear`s under `prefix` in a state dict: `<prefix>.<k>.weight` [out, in]
 * and `.bias` [out] for k = 0, 2, 4, … (ReLUs between). Checks that the keys are all there and that
 * shapes chain; errors name the key and both shapes.
 */
function readSequential(
  ckpt: TorchCheckpoint,
  dict: Map<unknown, unknown>,
  where: string,
  prefix: string,
): MlpWeights {
  const indices = [...dict.keys()]
    .map((k) =>
      String(k).match(
        new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.(\\d+)\\.(weight|bias)$`),
      )
    )
    .filter((m): m is RegExpMatchArray => m !== null)
    .map((m) => Number(m[1]));
  const last = Math.max(-1, ...indices);
  if (last < 0) {
    fail(
      "input",
      `${where}.${prefix}.0.weight is missing (no ${prefix}.* layers in ${where})`,
      "is this a CORL Cal-QL checkpoint?",
    );
  }
  const tensorAt = (key: string): TorchTensor => {
    const t = dict.get(key);
    if (t === undefined) {
      fail("input", `${where}.${key} is missing`, "the checkpoint does not have CORL's layout");
    }
    if (!(t instanceof TorchTensor)) fail("input", `${where}.${key} is not a tensor`);
    return t;
  };
  const sizes: number[] = [];
  const weights: Float32Array[] = [], biases: Float32Array[] = [];
  for (let k = 0; k <= last; k += 2) {
    const w = tensorAt(`${prefix}.${k}.weight`);
    const b = tensorAt(`${prefix}.${k}.bias`);
    if (w.shape.length !== 2) {
      fail("input", `${where}.${prefix}.${k}.weight has shape ${shapeText(w.shape)}, expected [out, in]`);
    }
    const [out, inp] = w.shape;
    if (sizes.length > 0 && inp !== sizes[sizes.length - 1]) {
      fail(
        "input",
        `${where}.${prefix}.${k}.weight has shape ${shapeText(w.shape)}, expected [${out}, ${
          sizes[sizes.length - 1]
        }] (the previous layer has ${sizes[sizes.length - 1]} outputs)`,
      );
    }
    if (b.shape.length !== 1 || b.shape[0] !== out) {
      fail("input", `${where}.${prefix}.${k}.bias has shape ${shapeText(b.shape)}, expected [${out}]`);
    }
    if (sizes.length === 0) sizes.push(inp);
    sizes.push(out);
    weights.push(fromTorchLinear(ckpt.values(w), out, inp));
    biases.push(ckpt.values(b));
  }
  const odd = indices.find((i) => i % 2 === 1);
  if (odd !== undefined) {
    fail("input", `${where}.${prefix}.${odd}.* is unexpected: CORL's Linear layers sit at even indices`);
  }
  return { sizes, weights, biases };
}

function stateDict(root: unknown, key: string, file: string): Map<unknown, unknown> {
  if (!(root instanceof Map)) {
    fail(
      "input",
      `${file} does not hold a dict at the top level`,
      "is this a CORL checkpoint (trainer.state_dict())?",
    );
  }
  const d = root.get(key);
  if (d === undefined) {
    fail(
      "input",
      `${file} has no "${key}" state dict (top-level keys: ${[...root.keys()].map(String).join(", ")})`,
      "expected CORL's layout: actor, critic1, critic2, …",
    );
  }
  if (!(d instanceof Map)) fail("input", `${file}: "${key}" is not a state dict`);
  return d;
}

function scalarAt(ckpt: TorchCheckpoint, dict: Map<unknown, unknown>, where: string, key: string): number {
  const t = dict.get(key);
  if (t === undefined) {
    fail("input", `${where}.${key} is missing`, "CORL's TanhGaussianPolicy stores it as a Scalar parameter");
  }
  if (!(t instanceof TorchTensor)) fail("input", `${where}.${key} is not a tensor`);
  if (t.numel !== 1) fail("input", `${where}.${key} has shape ${shapeText(t.shape)}, expected a scalar []`);
  return ckpt.values(t)[0];
}

/**
 * A teacher from a CORL Cal-QL checkpoint: `actor` (TanhGaussianPolicy: `base_network.{0,2,4,6}`,
 * last layer 2·|A| outputs μ then log σ, scalars `log_std_multiplier.constant` and
 * `log_std_offset.constant`) and `critic1` (`network.{0,2,4}`, input concat(s, a), one output).
 */
export function teacherFromCorl(ckpt: TorchCheckpoint, options: CorlImportOptions): TeacherArtifact {
  const { file } = options;
  const actorDict = stateDict(ckpt.root, "actor", file);
  const criticDict = stateDict(ckpt.root, "critic1", file);
  const actor = readSequential(ckpt, actorDict, "actor", "base_network");
  const obsDim = actor.sizes[0];
  const actorOut = actor.sizes[actor.sizes.length - 1];
  if (actorOut % 2 !== 0) {
    fail(
      "input",
      `actor.base_network.${
        2 * (actor.sizes.length - 2)
      }.weight has ${actorOut} outputs; a tanh-Gaussian actor has 2·|A| (mean and log-std)`,
    );
  }
  const actDim = actorOut / 2;
  const critic = readSequential(ckpt, criticDict, "critic1", "network");
  if (critic.sizes[0] !== obsDim + actDim) {
    fail(
      "input",
      `critic1.network.0.weight has shape [${critic.sizes[1]}, ${critic.sizes[0]}], expected [${
        critic.sizes[1]
      }, ${obsDim + actDim}] (the actor has ${obsDim} states and ${actDim} actions)`,
    );
  }
  if (critic.sizes[critic.sizes.length - 1] !== 1) {
    fail(
      "input",
      `critic1.network.${2 * (critic.sizes.length - 2)}.weight has ${
        critic.sizes[critic.sizes.length - 1]
      } outputs, expected 1`,
    );
  }
  const head = {
    ...CORL_GAUSSIAN_HEAD,
    logStdMultiplier: scalarAt(ckpt, actorDict, "actor", "log_std_multiplier.constant"),
    logStdOffset: scalarAt(ckpt, actorDict, "actor", "log_std_offset.constant"),
  };
  const stateMean = options.stateMean ?? new Float32Array(obsDim);
  const stateStd = options.stateStd ?? new Float32Array(obsDim).fill(1);
  if (stateMean.length !== obsDim || stateStd.length !== obsDim) {
    fail(
      "input",
      `the dataset has ${stateMean.length}-dimensional states, the checkpoint's actor takes ${obsDim}`,
      "import with the dataset the teacher was trained on",
    );
  }
  const root = ckpt.root as Map<unknown, unknown>;
  const totalIt = root.get("total_it");
  return {
    format: TEACHER_FORMAT,
    formatVersion: TEACHER_FORMAT_VERSION,
    algorithm: "calql",
    source: `imported:${file.split("/").pop()}`,
    env: options.env,
    obsDim,
    actDim,
    maxAction: options.maxAction ?? 1,
    stateMean,
    stateStd,
    actor: { kind: "tanh-gaussian", net: actor, head },
    critic,
    training: { steps: typeof totalIt === "number" ? totalIt : 0, seconds: 0 },
    evaluation: null,
  };
}

/** Reads `file` and converts it with {@link teacherFromCorl}. */
export async function importCorlCheckpoint(
  file: string,
  options: Omit<CorlImportOptions, "file">,
): Promise<TeacherArtifact> {
  const bytes = await Deno.readFile(file).catch((e) =>
    fail("input", `cannot read ${file} (${(e as Error).message.split("\n")[0]})`)
  );
  return teacherFromCorl(await readTorchCheckpoint(bytes, file), { ...options, file });
}
