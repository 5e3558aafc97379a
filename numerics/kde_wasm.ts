/**
 * The inner loop of the pruned KDE as a WebAssembly SIMD function, with a plain JavaScript twin.
 *
 * `leaf(...)` processes one reference leaf against every still-active query of a block. All state
 * lives in one memory (the wasm memory, shared by the workers) laid out by `planLayout` in
 * `kde_tree.ts`. The module is emitted here, byte by byte, specialized for the dimension W: the
 * query's coordinates sit in SIMD registers and the leaf's points are stored two at a time
 * ("packets": coordinate k of points 2j and 2j+1 side by side), so each f64x2 operation handles two
 * pairs; squared distances are float64 (`bench/density.ts` times it against the JavaScript loop). The twin
 * {@link leafKernelJs} does the same arithmetic on the same memory; tests hold the two together.
 *
 * Per query the state is six float64 values at `state + 48·i`:
 *   [0] m      smallest u = c2·‖q − x‖² seen so far (+∞ before any),
 *   [1] S′     Σ exp(m − u) over evaluated pairs (the kernel sum is S_c = exp(−m)·S′),
 *   [2] T      squared-distance threshold: a pair beyond it has a kernel value below
 *              exp(−c2·T) ≤ (ρ/M)·S_c, where log C = log(M/ρ) (T = +∞ before any pair),
 *   [3] kernel values computed, [4] pairs skipped (beyond T), [5] pairs whose distance was computed.
 *
 * A leaf whose box is farther than √T from q is skipped whole; in an evaluated leaf, the exponentials
 * are skipped for each group of four points all beyond √T. T is recomputed after every evaluated
 * leaf from S′, which only grows, so every skipped pair's kernel value is below ρ·S_c/M for the final
 * S_c: fewer than M of them, so the skipped mass is below ρ·S_c.
 *
 * Kernel values exp(−x), x = u − m ≥ 0, are 2^(−n)·exp(−r) with n = round(x/ln 2) and r = x − n·ln 2
 * computed in float64 and exp(−r), |r| ≤ ln2/2, by a degree-6 Taylor polynomial evaluated in float32,
 * four lanes at a time; each is exact to a relative {@link KERNEL_REL_ERROR} (2e-6), so every kernel
 * sum is. (Rescaling S′ to a new m uses a degree-8 polynomial in float64, exact to 3e-10.)
 * @module
 */

// ---------------------------------------------------------------------------------------------
// A tiny WebAssembly assembler: just what the kernel needs
// ---------------------------------------------------------------------------------------------

type Bytes = readonly number[];

function uleb(n: number): Bytes {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n: number): Bytes {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const vecOf = (items: Bytes[]): Bytes => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: Bytes): Bytes => [id, ...uleb(body.length), ...body];
const utf8 = (s: string): Bytes => vecOf([...new TextEncoder().encode(s)].map((b) => [b]));

const T_I32 = 0x7f, T_F64 = 0x7c, T_V128 = 0x7b, BLOCK_VOID = 0x40;
const get = (i: number): Bytes => [0x20, ...uleb(i)];
const set = (i: number): Bytes => [0x21, ...uleb(i)];
const tee = (i: number): Bytes => [0x22, ...uleb(i)];
const i32 = (v: number): Bytes => [0x41, ...sleb(v)];
const f64 = (x: number): Bytes => [0x44, ...new Uint8Array(Float64Array.of(x).buffer)];
const memarg = (align: number, offset: number): Bytes => [...uleb(align), ...uleb(offset)];
const loadF64 = (offset = 0): Bytes => [0x2b, ...memarg(3, offset)];
const storeF64 = (offset = 0): Bytes => [0x39, ...memarg(3, offset)];
const loadI32 = (offset = 0): Bytes => [0x28, ...memarg(2, offset)];
const OP = {
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  block: 0x02,
  loop: 0x03,
  if: 0x04,
  else: 0x05,
  i32Add: 0x6a,
  i32Mul: 0x6c,
  i32GeU: 0x4f,
  i32Shl: 0x74,
  f64Add: 0xa0,
  f64Sub: 0xa1,
  f64Mul: 0xa2,
  f64Div: 0xa3,
  f64Min: 0xa4,
  f64Max: 0xa5,
  f64Lt: 0x63,
  f64Gt: 0x64,
} as const;
const simd = (op: number): Bytes => [0xfd, ...uleb(op)];
const V = {
  load: (offset = 0): Bytes => [...simd(0x00), ...memarg(4, offset)],
  store: (offset = 0): Bytes => [...simd(0x0b), ...memarg(4, offset)],
  splat: (x: number): Bytes => [...simd(0x0c), ...new Uint8Array(Float64Array.of(x, x).buffer)],
  f64Splat: simd(0x14),
  lane0: [...simd(0x21), 0],
  lane1: [...simd(0x21), 1],
  eq: simd(0x47),
  gt: simd(0x4a),
  i64AllTrue: simd(0xc3),
  and: simd(0x4e),
  add: simd(0xf0),
  sub: simd(0xf1),
  mul: simd(0xf2),
  pmin: simd(0xf6),
  pmax: simd(0xf7),
  nearest: simd(0x94),
  truncSatZero: simd(0xfc), // i32x4.trunc_sat_f64x2_s_zero
  demoteZero: simd(0x5e), // f32x4.demote_f64x2_zero
  promoteLow: simd(0x5f), // f64x2.promote_low_f32x4
  /** i8x16.shuffle taking the low 8 bytes of each operand: [a0, a1, b0, b1] for 32-bit lanes. */
  shuffleLow64: [...simd(0x0d), 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23],
  /** i8x16.shuffle moving the high 8 bytes of the first operand down. */
  shuffleHigh64: [...simd(0x0d), 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15],
  splatF32: (x: number): Bytes => [...simd(0x0c), ...new Uint8Array(Float32Array.of(x, x, x, x).buffer)],
  f32Add: simd(0xe4),
  f32Mul: simd(0xe6),
  i32Shl: simd(0xab),
  i32Sub: simd(0xb1),
  extendLowS: simd(0xc7), // i64x2.extend_low_i32x4_s
  i64Shl: simd(0xcb),
  i64Sub: simd(0xd1),
} as const;

// ---------------------------------------------------------------------------------------------
// The kernel
// ---------------------------------------------------------------------------------------------

/** Bytes of per-query state (six float64). */
export const STATE_BYTES = 48;
/** Largest x for which exp(−x) is evaluated; beyond, exp(−700) ≈ 1e-304 is used (never skips mass). */
const X_MAX = 700;
/** exp(−r) Taylor coefficients, degree 8, highest first (float64 path, used for rescaling). */
const EXP_COEFFS = [1 / 40320, -1 / 5040, 1 / 720, -1 / 120, 1 / 24, -1 / 6, 1 / 2, -1, 1];
/**
 * Kernel values: exp(−x) = 2^(−n)·exp(−r), n = round(x/ln 2) and r = x − n·ln 2 in float64, then
 * exp(−r), |r| ≤ ln2/2 = 0.347, by its Taylor polynomial of degree 6 evaluated by Horner in float32,
 * relative to exp(−r) ≥ 0.707: truncation ≤ 0.347^7/7!/0.707 < 1.8e-7; Horner's rounding
 * ≤ γ₁₂·e^0.347/0.707 < 1.5e-6 (γ₁₂ = 12·2⁻²⁴/(1 − 12·2⁻²⁴)); coefficients rounded to float32
 * < 1.3e-7; r rounded to float32 < 2.1e-8; the scaling by 2^(−n) and the conversions back to
 * float64 are exact. Total < 1.9e-6 ≤ {@link KERNEL_REL_ERROR}.
 */
const EXP_COEFFS_F32 = [1 / 720, -1 / 120, 1 / 24, -1 / 6, 1 / 2, -1, 1].map(Math.fround);
/** Beyond this x the float32 path would leave the normal range: such terms count as exp(−80) ≈ 2e-35. */
const X_MAX_F32 = 80;
/** Bound on the relative error of each computed kernel value (hence of each kernel sum). */
export const KERNEL_REL_ERROR = 2e-6;

/**
 * Emits the module: one function `leaf` and an imported memory `env.mem` (shared when `shared`).
 * Parameters (byte offsets into the memory unless noted):
 *   rec     the leaf record (box lo[W], hi[W], then packets),
 *   npk     packets in the leaf (i32), count (f64) points in it,
 *   nAct    active queries (i32), act: their indices (i32 each),
 *   qbase   query coordinates (W float64 per query index), state: per-query state,
 *   c2      1/(2h²), logC = log(M/ρ) (f64), scratch: 16·npk bytes.
 */
export function emitLeafKernel(width: number, shared: boolean): Uint8Array {
  const W = width;
  // Parameters.
  const P = { rec: 0, npk: 1, count: 2, nAct: 3, act: 4, qbase: 5, state: 6, c2: 7, logC: 8, scratch: 9 };
  let next = 10;
  const v128Locals: number[] = [];
  const vl = () => {
    v128Locals.push(next);
    return next++;
  };
  const qv = Array.from({ length: W }, vl);
  const acc = vl(),
    t = vl(),
    mn = vl(),
    c2v = vl(),
    mv = vl(),
    xv = vl(),
    rv = vl(),
    nv = vl(),
    sacc = vl(),
    tv = vl(),
    val = vl();
  const i32Locals: number[] = [];
  const il = () => {
    i32Locals.push(next);
    return next++;
  };
  const a = il(), q = il(), sp = il(), ptr = il(), endp = il(), j = il();
  const f64Locals: number[] = [];
  const fl = () => {
    f64Locals.push(next);
    return next++;
  };
  const m = fl(),
    S = fl(),
    T = fl(),
    bd = fl(),
    g = fl(),
    v = fl(),
    x = fl(),
    mnew = fl(),
    f = fl(),
    rej = fl(),
    kern = fl(),
    inv = fl();

  // Leaves exp(−src) on the stack (src: a v128 local with lanes in [0, X_MAX] or NaN).
  const expv = (src: number): Bytes => [
    ...get(src),
    ...V.splat(1 / Math.LN2),
    ...V.mul,
    ...V.nearest,
    ...set(nv),
    ...get(src),
    ...get(nv),
    ...V.splat(Math.LN2),
    ...V.mul,
    ...V.sub,
    ...set(rv),
    ...V.splat(EXP_COEFFS[0]),
    ...EXP_COEFFS.slice(1).flatMap((c) => [...get(rv), ...V.mul, ...V.splat(c), ...V.add]),
    // Multiply by 2^(−n): subtract n from the exponent field.
    ...get(nv),
    ...V.truncSatZero,
    ...V.extendLowS,
    ...i32(52),
    ...V.i64Shl,
    ...V.i64Sub,
  ];

  const body: number[] = [];
  const emit = (...parts: Bytes[]) => {
    for (const part of parts) body.push(...part);
  };
  emit(i32(0), set(a), f64(1), get(P.c2), [OP.f64Div], set(inv));
  emit([OP.block, BLOCK_VOID, OP.loop, BLOCK_VOID]);
  emit(get(a), get(P.nAct), [OP.i32GeU, OP.brIf, 1]);
  // q = qbase + act[a]·W·8, sp = state + act[a]·48
  emit(get(P.act), get(a), i32(2), [OP.i32Shl, OP.i32Add], loadI32(), tee(j));
  emit(i32(W * 8), [OP.i32Mul], get(P.qbase), [OP.i32Add], set(q));
  emit(get(j), i32(STATE_BYTES), [OP.i32Mul], get(P.state), [OP.i32Add], set(sp));
  emit(get(sp), loadF64(0), set(m), get(sp), loadF64(8), set(S), get(sp), loadF64(16), set(T));
  // Squared distance from q to the leaf's box; beyond T the whole leaf is skipped.
  emit(f64(0), set(bd));
  for (let k = 0; k < W; k++) {
    emit(get(q), loadF64(8 * k), set(v));
    emit(get(P.rec), loadF64(8 * k), get(v), [OP.f64Sub], get(v), get(P.rec), loadF64(8 * (W + k)), [
      OP.f64Sub,
    ]);
    emit([OP.f64Max], f64(0), [OP.f64Max], tee(g), get(g), [OP.f64Mul], get(bd), [OP.f64Add], set(bd));
  }
  emit(get(bd), get(T), [OP.f64Gt, OP.if, BLOCK_VOID]);
  emit(get(sp), get(sp), loadF64(32), get(P.count), [OP.f64Add], storeF64(32));
  emit(get(a), i32(1), [OP.i32Add], set(a), [OP.br, 1, OP.end]); // next query
  // Pass 1: squared distances into scratch, and their minimum.
  for (let k = 0; k < W; k++) emit(get(q), loadF64(8 * k), V.f64Splat, set(qv[k]));
  emit(
    get(P.rec),
    i32(16 * W),
    [OP.i32Add],
    tee(ptr),
    get(P.npk),
    i32(16 * W),
    [OP.i32Mul, OP.i32Add],
    set(endp),
  );
  emit(get(P.scratch), set(j), V.splat(Infinity), set(mn));
  emit([OP.block, BLOCK_VOID, OP.loop, BLOCK_VOID], get(ptr), get(endp), [OP.i32GeU, OP.brIf, 1]);
  for (let k = 0; k < W; k++) {
    emit(get(qv[k]), get(ptr), V.load(16 * k), V.sub, tee(t), get(t), V.mul);
    if (k > 0) emit(get(acc), V.add);
    emit(set(acc));
  }
  emit(get(j), get(acc), V.store(0), get(mn), get(acc), V.pmin, set(mn)); // NaN (padding) lanes leave mn as is
  emit(get(j), i32(16), [OP.i32Add], set(j), get(ptr), i32(16 * W), [OP.i32Add], set(ptr), [
    OP.br,
    0,
    OP.end,
    OP.end,
  ]);
  // A new smallest u: rescale S′ to it.
  emit(get(mn), V.lane0, get(mn), V.lane1, [OP.f64Min], get(P.c2), [OP.f64Mul], tee(mnew), get(m), [
    OP.f64Lt,
    OP.if,
    BLOCK_VOID,
  ]);
  emit(
    get(m),
    get(mnew),
    [OP.f64Sub],
    f64(X_MAX),
    [OP.f64Min],
    V.f64Splat,
    set(xv),
    expv(xv),
    V.lane0,
    set(f),
  );
  emit(get(S), get(f), [OP.f64Mul], set(S), get(mnew), set(m), [OP.end]);
  // Pass 2: S′ += Σ exp(m − c2·d²), two packets (four points) at a time; padding lanes (NaN) are
  // masked out, and pairs of packets whose four points all lie beyond T are skipped and counted.
  // exp(−x) = 2^(−n)·exp(−r): n and r in float64, the polynomial in float32 (four lanes).
  emit(
    get(P.c2),
    V.f64Splat,
    set(c2v),
    get(m),
    V.f64Splat,
    set(mv),
    get(T),
    V.f64Splat,
    set(tv),
    V.splat(0),
    set(sacc),
  );
  emit(f64(0), set(rej), f64(0), set(kern));
  emit(get(P.scratch), tee(j), get(P.npk), i32(16), [OP.i32Mul, OP.i32Add], set(endp));
  emit([OP.block, BLOCK_VOID, OP.loop, BLOCK_VOID], get(j), get(endp), [OP.i32GeU, OP.brIf, 1]);
  emit(
    get(j),
    V.load(0),
    tee(t),
    get(tv),
    V.gt,
    V.i64AllTrue,
    get(j),
    V.load(16),
    tee(acc),
    get(tv),
    V.gt,
    V.i64AllTrue,
  );
  emit([0x71, /* i32.and */ OP.if, BLOCK_VOID], get(rej), f64(4), [OP.f64Add], set(rej), [OP.else]);
  // Packet A in t, packet B in acc: x = clamp(c2·d² − m), n = round(x/ln 2), r = x − n·ln 2.
  const reduce = (d: number, nOut: number, rOut: number): Bytes => [
    ...get(d),
    ...get(c2v),
    ...V.mul,
    ...get(mv),
    ...V.sub,
    ...V.splat(X_MAX_F32),
    ...V.pmin,
    ...V.splat(0),
    ...V.pmax,
    ...set(xv),
    ...get(xv),
    ...V.splat(1 / Math.LN2),
    ...V.mul,
    ...V.nearest,
    ...set(nOut),
    ...get(xv),
    ...get(nOut),
    ...V.splat(Math.LN2),
    ...V.mul,
    ...V.sub,
    ...set(rOut),
  ];
  emit(reduce(t, nv, rv), reduce(acc, mn, val));
  // Four float32 lanes of r, four int32 lanes of n; then exp(−r) = Σ_k (−r)^k/k! by Horner.
  emit(get(rv), V.demoteZero, get(val), V.demoteZero, V.shuffleLow64, set(rv)); // r4 = [rA0, rA1, rB0, rB1]
  emit(get(nv), V.truncSatZero, get(mn), V.truncSatZero, V.shuffleLow64, set(nv)); // n4 (i32)
  emit(V.splatF32(EXP_COEFFS_F32[0]));
  for (const c of EXP_COEFFS_F32.slice(1)) emit(get(rv), V.f32Mul, V.splatF32(c), V.f32Add);
  emit(get(nv), i32(23), V.i32Shl, V.i32Sub, set(xv)); // e4 = poly · 2^(−n)
  emit(get(xv), V.promoteLow, get(t), get(t), V.eq, V.and, get(sacc), V.add);
  emit(get(xv), get(xv), V.shuffleHigh64, V.promoteLow, get(acc), get(acc), V.eq, V.and, V.add, set(sacc));
  emit(get(kern), f64(4), [OP.f64Add], set(kern), [OP.end]);
  emit(get(j), i32(32), [OP.i32Add], set(j), [OP.br, 0, OP.end, OP.end]);
  emit(get(S), get(sacc), V.lane0, [OP.f64Add], get(sacc), V.lane1, [OP.f64Add], tee(S));
  // T = (m − log S′ + logC)/c2, with log S′ ≥ (e + f)·ln 2 read from S′'s bits (S′ = 2^e·(1 + f), and
  // log(1 + f) ≥ f·ln 2): a threshold at most 0.09/c2 above the exact one, i.e. on the safe side.
  emit(
    [0xbd, /* i64.reinterpret_f64 */ 0xb9 /* f64.convert_i64_s */],
    f64(2 ** -52),
    [OP.f64Mul],
    f64(1023),
    [OP.f64Sub],
  );
  emit(f64(Math.LN2), [OP.f64Mul], set(x));
  emit(get(sp), get(m), get(x), [OP.f64Sub], get(P.logC), [OP.f64Add], get(inv), [OP.f64Mul], storeF64(16));
  emit(get(sp), get(m), storeF64(0), get(sp), get(S), storeF64(8));
  emit(get(sp), get(sp), loadF64(24), get(kern), [OP.f64Add], storeF64(24));
  emit(get(sp), get(sp), loadF64(32), get(rej), [OP.f64Add], storeF64(32));
  emit(get(sp), get(sp), loadF64(40), get(P.count), [OP.f64Add], storeF64(40));
  emit(get(a), i32(1), [OP.i32Add], set(a), [OP.br, 0, OP.end, OP.end, OP.end]);

  const locals = vecOf([
    [...uleb(v128Locals.length), T_V128],
    [...uleb(i32Locals.length), T_I32],
    [...uleb(f64Locals.length), T_F64],
  ]);
  const code = [...locals, ...body];
  const params = [T_I32, T_I32, T_F64, T_I32, T_I32, T_I32, T_I32, T_F64, T_F64, T_I32];
  const memoryLimits = shared ? [0x03, ...uleb(1), ...uleb(65536)] : [0x00, ...uleb(1)];
  return new Uint8Array([
    0x00,
    0x61,
    0x73,
    0x6d,
    0x01,
    0x00,
    0x00,
    0x00,
    ...section(1, vecOf([[0x60, ...vecOf(params.map((p) => [p])), ...vecOf([])]])),
    ...section(2, vecOf([[...utf8("env"), ...utf8("mem"), 0x02, ...memoryLimits]])),
    ...section(3, vecOf([[0]])),
    ...section(7, vecOf([[...utf8("leaf"), 0x00, 0]])),
    ...section(10, vecOf([[...uleb(code.length), ...code]])),
  ]);
}

/** The kernel's signature (byte offsets into the memory; see {@link emitLeafKernel}). */
export type LeafKernel = (
  rec: number,
  npk: number,
  count: number,
  nAct: number,
  act: number,
  qbase: number,
  state: number,
  c2: number,
  logC: number,
  scratch: number,
) => void;

/** exp(−x) for x ∈ [0, X_MAX] exactly as the wasm kernel computes it. */
function expNegLikeKernel(x: number): number {
  const n = Math.round(x / Math.LN2); // ties differ from wasm's nearest-even only at exact halves: harmless
  const r = x - n * Math.LN2;
  let p = EXP_COEFFS[0];
  for (let i = 1; i < EXP_COEFFS.length; i++) p = p * r + EXP_COEFFS[i];
  return p * 2 ** -n;
}

/** exp(−x) for x ∈ [0, X_MAX_F32] exactly as the wasm kernel's float32 path computes it. */
function expNegF32LikeKernel(x: number): number {
  const n = Math.round(x / Math.LN2);
  const r = Math.fround(x - n * Math.LN2);
  let p = EXP_COEFFS_F32[0];
  for (let i = 1; i < EXP_COEFFS_F32.length; i++) p = Math.fround(Math.fround(p * r) + EXP_COEFFS_F32[i]);
  return p * 2 ** -n;
}

/** A lower bound of log x (x ≥ 1, finite) from its bits, exactly as the wasm kernel computes it. */
function logLowerBound(x: number): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = Number(view.getBigInt64(0));
  return (bits * 2 ** -52 - 1023) * Math.LN2;
}

/**
 * The same computation in plain JavaScript on the memory's views (for tests, and where WebAssembly
 * SIMD is unavailable). Much slower: it exists to pin the wasm kernel.
 */
export function leafKernelJs(memory: ArrayBufferLike, width: number): LeafKernel {
  const F = new Float64Array(memory);
  const I = new Int32Array(memory);
  const W = width;
  return (rec, npk, count, nAct, act, qbase, state, c2, logC, scratch) => {
    const r8 = rec / 8;
    for (let a = 0; a < nAct; a++) {
      const qi = I[act / 4 + a];
      const q8 = qbase / 8 + qi * W;
      const s8 = (state + qi * STATE_BYTES) / 8;
      let m = F[s8], S = F[s8 + 1];
      const T = F[s8 + 2];
      let bd = 0;
      for (let k = 0; k < W; k++) {
        const vq = F[q8 + k];
        const gap = Math.max(F[r8 + k] - vq, vq - F[r8 + W + k], 0);
        bd += gap * gap;
      }
      if (bd > T) {
        F[s8 + 4] += count;
        continue;
      }
      const p8 = r8 + 2 * W;
      let mn = Infinity;
      for (let i = 0; i < 2 * npk; i++) {
        const pk = i >> 1, lane = i & 1;
        let d2 = 0;
        for (let k = 0; k < W; k++) {
          const t = F[q8 + k] - F[p8 + pk * 2 * W + 2 * k + lane];
          d2 += t * t;
        }
        F[scratch / 8 + i] = d2;
        if (d2 < mn) mn = d2;
      }
      const mnew = c2 * mn;
      if (mnew < m) {
        S *= expNegLikeKernel(Math.min(m - mnew, X_MAX));
        m = mnew;
      }
      let sum0 = 0, sum1 = 0, rej = 0, kern = 0;
      for (let pk = 0; pk < npk; pk += 2) {
        const d = [0, 1, 2, 3].map((i) => F[scratch / 8 + 2 * pk + i]); // A0, A1, B0, B1
        if (d.every((v) => v > T)) {
          rej += 4;
          continue;
        }
        kern += 4;
        const e = d.map((
          v,
        ) => (v === v ? expNegF32LikeKernel(Math.max(Math.min(c2 * v - m, X_MAX_F32), 0)) : 0));
        sum0 = sum0 + e[0] + e[2];
        sum1 = sum1 + e[1] + e[3];
      }
      S = S + sum0 + sum1;
      F[s8] = m;
      F[s8 + 1] = S;
      F[s8 + 2] = (m - logLowerBound(S) + logC) * (1 / c2);
      F[s8 + 3] += kern;
      F[s8 + 4] += rej;
      F[s8 + 5] += count;
    }
  };
}

/** Compiles the wasm kernel for `width` (cached per width and sharing). */
const compiled = new Map<string, WebAssembly.Module>();
export function leafKernelModule(width: number, shared: boolean): WebAssembly.Module {
  const key = `${width}/${shared}`;
  let mod = compiled.get(key);
  if (!mod) {
    mod = new WebAssembly.Module(emitLeafKernel(width, shared) as Uint8Array<ArrayBuffer>);
    compiled.set(key, mod);
  }
  return mod;
}

/** Instantiates the wasm kernel on `memory`. */
export function leafKernelWasm(module: WebAssembly.Module, memory: WebAssembly.Memory): LeafKernel {
  const instance = new WebAssembly.Instance(module, { env: { mem: memory } });
  return instance.exports.leaf as LeafKernel;
}
