/**
 * The wasm backend's `BatchMatMul` and `_FusedMatMul` computed by a system CBLAS: `cblas_sgemm` on
 * Float32Array views of the wasm heap at the tensors' offsets (no copy), transposes through sgemm's
 * own flags, batched and broadcast-batch shapes, fused bias and activation. Anything else (other
 * dtypes, PReLU, a bias that is not per column) goes to the kernel that was registered before.
 * `Sum` over leading axes (every bias gradient: column sums of a [rows × width] gradient), which
 * tfjs-wasm computes by transposing first, is one `cblas_sgemv` with a vector of ones. And
 * `Identity`, which the autodiff tape calls to save every tensor a gradient needs, and `Cast` to the
 * same dtype (every ReLU gradient casts its float mask to float) share the data (a reference count,
 * as tfjs's cpu backend and the wasm `Reshape` do) instead of copying it.
 *
 * Without a BLAS the same registration keeps tfjs 4.22's untransposed wasm kernel fast: its
 * transposed path is ≈ 12× slower (platform notes), so transposed operands are materialized first.
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { BlasLibrary } from "./blas.ts";

/** The parts of tfjs-wasm's backend the kernels use. */
interface WasmBackend {
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: unknown): void;
  incRef(dataId: unknown): void;
  dataIdMap: { get(dataId: unknown): { memoryOffset: number } };
  wasm: { HEAPU8: Uint8Array };
}

type KernelArgs = {
  inputs: Record<string, tf.TensorInfo | undefined>;
  attrs: Record<string, unknown>;
  backend: WasmBackend;
};

let library: BlasLibrary | undefined;
const originals = new Map<string, tf.KernelConfig>();

/** The BLAS the wasm matmul kernels call now (undefined: pure wasm). */
export function activeBlas(): BlasLibrary | undefined {
  return library;
}

/**
 * Registers (once) the wasm `BatchMatMul`, `_FusedMatMul` and `Sum` kernels of this module and makes
 * them call `blas`, or, with `undefined`, the original wasm kernels (matmuls on untransposed
 * operands). Call after `tf.setBackend("wasm")`.
 */
export function useWasmMatMul(blas: BlasLibrary | undefined): void {
  library = blas;
  for (const kernelName of ["Identity", "Cast"]) {
    if (originals.has(kernelName)) continue;
    const original = tf.getKernel(kernelName, "wasm");
    if (!original) throw new Error(`wasm kernel ${kernelName} not registered`);
    originals.set(kernelName, original);
    tf.unregisterKernel(kernelName, "wasm");
    tf.registerKernel({
      ...original,
      kernelFunc: (args) => {
        const { inputs, attrs, backend } = args as unknown as KernelArgs;
        const x = inputs.x!;
        const same = kernelName === "Identity" || attrs.dtype === x.dtype;
        if (!library || !same || x.dtype === "string") return original.kernelFunc(args);
        backend.incRef(x.dataId);
        return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
      },
    });
  }
  if (!originals.has("Sum")) {
    const original = tf.getKernel("Sum", "wasm");
    if (!original) throw new Error("wasm kernel Sum not registered");
    originals.set("Sum", original);
    tf.unregisterKernel("Sum", "wasm");
    tf.registerKernel({
      ...original,
      kernelFunc: (args) =>
        (library && blasSum(library, args as unknown as KernelArgs)) || original.kernelFunc(args),
    });
  }
  for (const kernelName of ["BatchMatMul", "_FusedMatMul"]) {
    if (originals.has(kernelName)) continue;
    const original = tf.getKernel(kernelName, "wasm");
    if (!original) throw new Error(`wasm kernel ${kernelName} not registered`);
    originals.set(kernelName, original);
    tf.unregisterKernel(kernelName, "wasm");
    const fused = kernelName === "_FusedMatMul";
    tf.registerKernel({
      ...original,
      kernelFunc: (args) => {
        const a = args as unknown as KernelArgs;
        if (library) {
          const out = blasMatMul(library, a, fused);
          if (out) return out;
        }
        return untransposed(original, a);
      },
    });
  }
}

/** Runs the kernel registered before this module's, e.g. to compare against it. */
export function originalKernel(
  kernelName: "BatchMatMul" | "_FusedMatMul" | "Sum",
): tf.KernelConfig | undefined {
  return originals.get(kernelName) ?? tf.getKernel(kernelName, "wasm");
}

function untransposed(original: tf.KernelConfig, args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const { inputs, attrs, backend } = args;
  if (!attrs.transposeA && !attrs.transposeB) return original.kernelFunc(args as never);
  const transpose = tf.getKernel("Transpose", "wasm");
  if (!transpose) throw new Error("wasm kernel Transpose not registered");
  const temporaries: tf.TensorInfo[] = [];
  const materialize = (x: tf.TensorInfo): tf.TensorInfo => {
    const rank = x.shape.length;
    const perm = [...Array(rank).keys()];
    [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
    const out = transpose.kernelFunc({ inputs: { x }, attrs: { perm }, backend } as never) as tf.TensorInfo;
    temporaries.push(out);
    return out;
  };
  const a = attrs.transposeA ? materialize(inputs.a!) : inputs.a;
  const b = attrs.transposeB ? materialize(inputs.b!) : inputs.b;
  const result = original.kernelFunc({
    ...args,
    inputs: { ...inputs, a, b },
    attrs: { ...attrs, transposeA: false, transposeB: false },
  } as never);
  for (const t of temporaries) backend.disposeData(t.dataId);
  return result;
}

const size = (shape: readonly number[]) => shape.reduce((p, d) => p * d, 1);

/** Broadcast of two batch shapes (numpy rules), or undefined when they do not broadcast. */
function broadcastShape(x: readonly number[], y: readonly number[]): number[] | undefined {
  const rank = Math.max(x.length, y.length);
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    const dx = x[x.length - rank + i] ?? 1, dy = y[y.length - rank + i] ?? 1;
    if (dx !== dy && dx !== 1 && dy !== 1) return undefined;
    out.push(dx === 1 ? dy : dx);
  }
  return out;
}

/** Index into a batch of shape `shape` (right-aligned to `out`) of output batch index `index`. */
function sourceBatch(index: number, out: readonly number[], shape: readonly number[]): number {
  let src = 0, stride = 1, rest = index;
  for (let i = out.length - 1; i >= 0; i--) {
    const coordinate = rest % out[i];
    rest = (rest - coordinate) / out[i];
    const j = shape.length - out.length + i;
    if (j >= 0) {
      if (shape[j] !== 1) src += coordinate * stride;
      stride *= shape[j];
    }
  }
  return src;
}

let onesCache = new Float32Array();

/** Column sums over the leading axes of a float32 tensor; undefined for other reductions. */
function blasSum(blas: BlasLibrary, args: KernelArgs): tf.TensorInfo | undefined {
  const { inputs, attrs, backend } = args;
  const x = inputs.x!;
  if (x.dtype !== "float32") return undefined;
  const rank = x.shape.length;
  const axes = [
    ...new Set(([] as number[]).concat(attrs.axis as number | number[]).map((a) => a < 0 ? a + rank : a)),
  ]
    .sort((a, b) => a - b);
  const lead = axes.length;
  if (lead === 0 || lead >= rank || axes.some((a, i) => a !== i)) return undefined;
  const rows = size(x.shape.slice(0, lead)), cols = size(x.shape.slice(lead));
  if (rows < 2 || cols === 0) return undefined;
  const shape = attrs.keepDims ? x.shape.map((d, i) => i < lead ? 1 : d) : x.shape.slice(lead);
  const out = backend.makeOutput(shape, "float32");
  if (onesCache.length < rows) onesCache = new Float32Array(rows).fill(1);
  const heap = backend.wasm.HEAPU8.buffer;
  const xv = new Float32Array(heap, backend.dataIdMap.get(x.dataId).memoryOffset, rows * cols);
  const ov = new Float32Array(heap, backend.dataIdMap.get(out.dataId).memoryOffset, cols);
  blas.sgemv(true, rows, cols, 1, xv, cols, onesCache.subarray(0, rows), 0, ov);
  return out;
}

type Activation = (c: Float32Array, alpha: number) => void;

const ACTIVATIONS: Record<string, Activation | null> = {
  linear: null,
  relu: (c) => { // a multiply by the mask: a branch per element mispredicts on signs
    for (let i = 0; i < c.length; i++) {
      const v = c[i];
      c[i] = v * +(v > 0);
    }
  },
  relu6: (c) => {
    for (let i = 0; i < c.length; i++) c[i] = c[i] < 0 ? 0 : c[i] > 6 ? 6 : c[i];
  },
  elu: (c) => {
    for (let i = 0; i < c.length; i++) if (c[i] < 0) c[i] = Math.expm1(c[i]);
  },
  leakyrelu: (c, alpha) => {
    for (let i = 0; i < c.length; i++) if (c[i] < 0) c[i] *= alpha;
  },
  sigmoid: (c) => {
    for (let i = 0; i < c.length; i++) c[i] = 1 / (1 + Math.exp(-c[i]));
  },
};

/** The product on the BLAS, or undefined where the original kernel must compute it. */
function blasMatMul(blas: BlasLibrary, args: KernelArgs, fused: boolean): tf.TensorInfo | undefined {
  const { inputs, attrs, backend } = args;
  const a = inputs.a!, b = inputs.b!;
  if (a.dtype !== "float32" || b.dtype !== "float32") return undefined;
  const ar = a.shape.length, br = b.shape.length;
  if (ar < 2 || br < 2) return undefined;
  const tA = !!attrs.transposeA, tB = !!attrs.transposeB;
  const m = tA ? a.shape[ar - 1] : a.shape[ar - 2];
  const k = tA ? a.shape[ar - 2] : a.shape[ar - 1];
  const n = tB ? b.shape[br - 2] : b.shape[br - 1];
  if (k !== (tB ? b.shape[br - 1] : b.shape[br - 2])) return undefined; // the original names the error
  const aBatch = a.shape.slice(0, -2), bBatch = b.shape.slice(0, -2);
  const batch = broadcastShape(aBatch, bBatch);
  if (!batch) return undefined;
  let activation: Activation | null = null, alpha = 0;
  let bias: tf.TensorInfo | undefined;
  if (fused) {
    if (inputs.preluActivationWeights) return undefined;
    const name = String(attrs.activation ?? "linear");
    if (!(name in ACTIVATIONS)) return undefined;
    activation = ACTIVATIONS[name];
    alpha = Number(attrs.leakyreluAlpha ?? 0.2);
    bias = inputs.bias ?? undefined;
    if (bias) {
      const s = size(bias.shape);
      if (bias.dtype !== "float32" || !(s === 1 || (s === n && bias.shape[bias.shape.length - 1] === n))) {
        return undefined;
      }
    }
  }
  const out = backend.makeOutput([...batch, m, n], "float32");
  const total = size(batch) * m * n;
  if (total === 0) return out;
  // Views only now: makeOutput may have grown (replaced) the heap's buffer.
  const heap = backend.wasm.HEAPU8.buffer;
  const view = (t: tf.TensorInfo, length: number) =>
    new Float32Array(heap, backend.dataIdMap.get(t.dataId).memoryOffset, length);
  const av = view(a, size(a.shape)), bv = view(b, size(b.shape)), cv = view(out, total);
  let beta = 0;
  if (bias) {
    const bb = view(bias, size(bias.shape));
    if (bb.length === 1) cv.fill(bb[0]);
    else for (let r = 0; r < total; r += n) cv.set(bb, r);
    beta = 1;
  } else if (k === 0) {
    cv.fill(0);
  }
  if (k > 0) {
    const lda = tA ? m : k, ldb = tB ? k : n;
    const batches = size(batch), aStride = m * k, bStride = k * n, cStride = m * n;
    if (!tA && size(bBatch) === 1 && size(aBatch) === batches) {
      // One B for every batch of a row-major A: the batches are just more rows.
      blas.sgemm(false, tB, batches * m, n, k, 1, av, lda, bv, ldb, beta, cv, n);
    } else {
      const sameA = aBatch.length === batch.length && size(aBatch) === batches;
      const sameB = bBatch.length === batch.length && size(bBatch) === batches;
      for (let i = 0; i < batches; i++) {
        const ia = sameA ? i : sourceBatch(i, batch, aBatch);
        const ib = sameB ? i : sourceBatch(i, batch, bBatch);
        blas.sgemm(
          tA,
          tB,
          m,
          n,
          k,
          1,
          batches === 1 ? av : av.subarray(ia * aStride, (ia + 1) * aStride),
          lda,
          batches === 1 ? bv : bv.subarray(ib * bStride, (ib + 1) * bStride),
          ldb,
          beta,
          batches === 1 ? cv : cv.subarray(i * cStride, (i + 1) * cStride),
          n,
        );
      }
    }
  }
  activation?.(cv, alpha);
  return out;
}
