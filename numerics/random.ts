/**
 * Seeded pseudo-random numbers shared by environments, collection and distillation.
 *
 * sfc32 seeded through splitmix32: fast, 128-bit state, and identical on every platform,
 * so the same seed gives the same trajectory everywhere.
 * @module
 */

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** A deterministic random stream; `fork` derives an independent child stream. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;
  #spareNormal: number | null = null;

  /** Creates a stream from an integer seed (any 32-bit value). */
  constructor(seed: number) {
    const init = splitmix32(seed);
    this.#a = init();
    this.#b = init();
    this.#c = init();
    this.#d = init();
    for (let i = 0; i < 12; i++) this.nextUint32();
  }

  /** Next raw 32-bit unsigned integer. */
  nextUint32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.nextUint32() / 4294967296;
  }

  /** Uniform in [low, high). */
  uniformRange(low: number, high: number): number {
    return low + (high - low) * this.uniform();
  }

  /** Standard normal (Box–Muller, caching the second value). */
  normal(): number {
    if (this.#spareNormal !== null) {
      const z = this.#spareNormal;
      this.#spareNormal = null;
      return z;
    }
    let u = 0;
    while (u === 0) u = this.uniform();
    const v = this.uniform();
    const r = Math.sqrt(-2 * Math.log(u));
    this.#spareNormal = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.uniform() * n);
  }

  /** An independent stream derived from this one (advances this stream). */
  fork(): Rng {
    return new Rng(this.nextUint32());
  }

  /** Fills `out` with standard normals scaled by `scale`. */
  fillNormal<T extends Float32Array | Float64Array>(out: T, scale = 1): T {
    for (let i = 0; i < out.length; i++) out[i] = scale * this.normal();
    return out;
  }

  /** Fills `out` with uniforms in [low, high). */
  fillUniform<T extends Float32Array | Float64Array>(out: T, low: number, high: number): T {
    for (let i = 0; i < out.length; i++) out[i] = this.uniformRange(low, high);
    return out;
  }

  /** `k` distinct indices from [0, n), in random order (partial Fisher–Yates). */
  sampleWithoutReplacement(n: number, k: number): Int32Array {
    if (k > n) throw new RangeError(`cannot draw ${k} distinct indices from ${n}`);
    const pool = new Int32Array(n);
    for (let i = 0; i < n; i++) pool[i] = i;
    for (let i = 0; i < k; i++) {
      const j = i + this.int(n - i);
      const t = pool[i];
      pool[i] = pool[j];
      pool[j] = t;
    }
    return pool.slice(0, k);
  }
}

/**
 * The one seed derivation of the toolkit: a 32-bit seed for the stream named by `path` under `seed`,
 * e.g. `deriveSeed(seed, step)` for step `step` of a run, `deriveSeed(seed, "student", s)` for
 * student s of an evaluation. Streams with different paths are independent, so a run resumed at
 * step t draws exactly what the uninterrupted run drew there, and turning one evaluation on or off
 * never changes another's numbers. Strings enter as their FNV-1a hash.
 */
export function deriveSeed(seed: number, ...path: readonly (number | string)[]): number {
  let h = seed >>> 0;
  for (const part of path) {
    const k = typeof part === "number" ? part : fnv1a(part);
    h = (Math.imul(h + 1, 0x9e3779b1) ^ Math.imul(k + 1, 0x85ebca77)) >>> 0;
  }
  return h;
}

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
