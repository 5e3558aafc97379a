/**
 * Encoding of stage outputs as files. A stage output is a plain value (objects, arrays, numbers,
 * strings, booleans, null) whose large numeric parts are typed arrays. Typed arrays are stored as
 * raw little-endian `.bin` files and referenced from `value.json`, so a 400k×17 dataset costs one
 * memcpy to save and to load instead of a giant JSON array.
 * @module
 */

const TYPED = {
  float32: Float32Array,
  float64: Float64Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
} as const;
type TypedName = keyof typeof TYPED;
type AnyTyped = InstanceType<(typeof TYPED)[TypedName]>;

/** The JSON file that holds the value's structure. */
export const VALUE_FILE = "value.json";

/** Splits `value` into `value.json` plus one binary file per typed array. */
export function encodeArtifact(value: unknown): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  const structure = encodeNode(value, files, "$");
  files.set(VALUE_FILE, new TextEncoder().encode(JSON.stringify(structure)));
  return files;
}

/** Rebuilds the value written by `encodeArtifact`. */
export function decodeArtifact(files: ReadonlyMap<string, Uint8Array>): unknown {
  const json = files.get(VALUE_FILE);
  if (!json) throw new Error(`artifact has no ${VALUE_FILE}`);
  return decodeNode(JSON.parse(new TextDecoder().decode(json)), files);
}

function typedName(value: ArrayBufferView): TypedName | undefined {
  for (const [name, ctor] of Object.entries(TYPED)) {
    if (value instanceof ctor) return name as TypedName;
  }
  return undefined;
}

function encodeNode(value: unknown, files: Map<string, Uint8Array>, path: string): unknown {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    // JSON has no NaN/Infinity; keep them explicit so a metric that diverged stays visible.
    return Number.isFinite(value) ? value : { $number: String(value) };
  }
  if (ArrayBuffer.isView(value)) {
    const name = typedName(value);
    if (!name) throw new TypeError(`${path}: unsupported typed array ${value.constructor.name}`);
    const file = `array-${files.size}.bin`;
    files.set(file, new Uint8Array(value.buffer, value.byteOffset, value.byteLength).slice());
    return { $typed: name, file, length: (value as AnyTyped).length };
  }
  if (Array.isArray(value)) return value.map((v, i) => encodeNode(v, files, `${path}[${i}]`));
  if (typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value as object)) {
      if (v !== undefined) out[k] = encodeNode(v, files, `${path}.${k}`);
    }
    return out;
  }
  throw new TypeError(`${path}: a stage output cannot contain a ${typeof value}`);
}

function decodeNode(node: unknown, files: ReadonlyMap<string, Uint8Array>): unknown {
  if (node === null || typeof node !== "object") return node;
  if (Array.isArray(node)) return node.map((v) => decodeNode(v, files));
  const record = node as Record<string, unknown>;
  if (typeof record.$typed === "string" && typeof record.file === "string") {
    const bytes = files.get(record.file);
    if (!bytes) throw new Error(`artifact is missing ${record.file}`);
    const ctor = TYPED[record.$typed as TypedName];
    if (!ctor) throw new Error(`artifact has unknown array type ${record.$typed}`);
    const copy = bytes.slice(); // aligned, owned buffer
    const array = new ctor(copy.buffer, 0, copy.byteLength / ctor.BYTES_PER_ELEMENT);
    if (array.length !== record.length) {
      throw new Error(`${record.file} holds ${array.length} values, expected ${record.length}`);
    }
    return array;
  }
  if (typeof record.$number === "string" && Object.keys(record).length === 1) return Number(record.$number);
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(record)) out[k] = decodeNode(v, files);
  return out;
}
