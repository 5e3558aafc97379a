/**
 * A pickle reader that builds data only: it never runs code. Python classes it does not know (a
 * pickled `nn.Module` such as CORL's `Scalar`, optimizer states) become inert {@link PyObject}s;
 * callers model the callables they know through `callGlobal`.
 * @module
 */

import { fail } from "../../core/errors.ts";

/** A Python global (`module.name`) referenced by a pickle: a class or a function, never called. */
export class PyGlobal {
  /** The global `module.name`. */
  constructor(readonly module: string, readonly name: string) {}
  /** `module.name`. */
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** An instance of a Python class this unpickler does not model: its class, arguments and state. */
export class PyObject {
  /** An instance of `cls` built from `args`, with the state BUILD gave it. */
  constructor(readonly cls: PyGlobal, readonly args: readonly unknown[], public state: unknown = undefined) {}
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
