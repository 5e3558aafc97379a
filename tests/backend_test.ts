/**
 * The backend module: selection errors, and, without a BLAS (`OBD_BLAS=off`; blas_test.ts covers the
 * BLAS kernels), the wasm transposed-matmul fix against untransposed results.
 */
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { initBackend, requestedBackend } from "../numerics/backend.ts";
import { Rng } from "../numerics/random.ts";

function randomMatrix(rng: Rng, rows: number, cols: number): Float32Array {
  return rng.fillNormal(new Float32Array(rows * cols));
}

/** C = op(A)·op(B) in float64, the independent reference. */
function referenceMatMul(
  a: Float32Array,
  aShape: [number, number],
  b: Float32Array,
  bShape: [number, number],
  transposeA: boolean,
  transposeB: boolean,
): Float64Array {
  const [m, k] = transposeA ? [aShape[1], aShape[0]] : aShape;
  const n = transposeB ? bShape[0] : bShape[1];
  const at = (i: number, p: number) => transposeA ? a[p * aShape[1] + i] : a[i * aShape[1] + p];
  const bt = (p: number, j: number) => transposeB ? b[j * bShape[1] + p] : b[p * bShape[1] + j];
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let p = 0; p < k; p++) s += at(i, p) * bt(p, j);
      c[i * n + j] = s;
    }
  }
  return c;
}

function maxAbsDiff(x: ArrayLike<number>, y: ArrayLike<number>): number {
  assert.equal(x.length, y.length);
  let d = 0;
  for (let i = 0; i < x.length; i++) d = Math.max(d, Math.abs(x[i] - y[i]));
  return d;
}

Deno.test("backend selection: flag beats environment, default is wasm, unknown names are config errors", () => {
  assert.equal(requestedBackend(undefined, undefined), "wasm");
  assert.equal(requestedBackend("cpu", "wasm"), "cpu");
  assert.equal(requestedBackend(undefined, "cpu"), "cpu");
  const error = requestedBackend("cuda", undefined);
  assert.equal(typeof error, "object");
  assert.match((error as { message: string }).message, /unknown backend "cuda" from --backend/);
  assert.match((error as { hint: string }).hint, /tensorflow, wasm, cpu/);
});

Deno.test("the tensorflow backend, when not installed, is an error that says how to install it", async () => {
  const result = await initBackend("tensorflow");
  assert.ok("kind" in result, "tfjs-node is not installed on this machine, so this must be an error");
  assert.equal(result.kind, "backend");
  assert.match(result.hint ?? "", /deno install --allow-scripts npm:@tensorflow\/tfjs-node/);
});

Deno.test("wasm transposed matmuls (fixed kernels, no BLAS) equal untransposed products", async () => {
  const info = await initBackend("wasm", { blas: "off" });
  assert.ok(!("kind" in info) && info.label === "wasm", JSON.stringify(info));
  assert.ok(!("kind" in info), JSON.stringify(info));
  assert.equal(tf.getBackend(), "wasm");
  const rng = new Rng(7);
  const [m, k, n] = [37, 53, 29]; // odd sizes catch stride mistakes
  for (
    const [transposeA, transposeB] of [[false, false], [true, false], [false, true], [true, true]] as const
  ) {
    const aShape: [number, number] = transposeA ? [k, m] : [m, k];
    const bShape: [number, number] = transposeB ? [n, k] : [k, n];
    const a = randomMatrix(rng, ...aShape);
    const b = randomMatrix(rng, ...bShape);
    const reference = referenceMatMul(a, aShape, b, bShape, transposeA, transposeB);
    const got = tf.tidy(() =>
      tf.matMul(tf.tensor2d(a, aShape), tf.tensor2d(b, bShape), transposeA, transposeB).dataSync()
    );
    // The untransposed path on explicitly transposed operands must agree too.
    const explicit = tf.tidy(() => {
      const at = transposeA ? tf.transpose(tf.tensor2d(a, aShape)) : tf.tensor2d(a, aShape);
      const bt = transposeB ? tf.transpose(tf.tensor2d(b, bShape)) : tf.tensor2d(b, bShape);
      return tf.matMul(at, bt).dataSync();
    });
    assert.ok(maxAbsDiff(got, reference) < 1e-4, `transposeA=${transposeA} transposeB=${transposeB}`);
    assert.ok(maxAbsDiff(got, explicit) < 1e-5);
  }
  // Batched (rank 3) and fused (bias + relu) variants.
  const batchA = randomMatrix(rng, 3, 4 * 5);
  const batchB = randomMatrix(rng, 3, 6 * 5);
  const batched = tf.tidy(() =>
    tf.matMul(tf.tensor3d(batchA, [3, 4, 5]), tf.tensor3d(batchB, [3, 6, 5]), false, true).arraySync()
  );
  for (let i = 0; i < 3; i++) {
    const ref = referenceMatMul(
      batchA.subarray(20 * i, 20 * i + 20),
      [4, 5],
      batchB.subarray(30 * i, 30 * i + 30),
      [6, 5],
      false,
      true,
    );
    assert.ok(maxAbsDiff((batched as number[][][])[i].flat(), ref) < 1e-4);
  }
  const x = randomMatrix(rng, 8, 16);
  const w = randomMatrix(rng, 12, 16);
  const bias = randomMatrix(rng, 1, 12);
  const fused = tf.tidy(() =>
    tf.fused.matMul({
      a: tf.tensor2d(x, [8, 16]),
      b: tf.tensor2d(w, [12, 16]),
      transposeB: true,
      bias: tf.tensor1d(bias),
      activation: "relu",
    })
      .dataSync()
  );
  const ref = referenceMatMul(x, [8, 16], w, [12, 16], false, true).map((v, i) =>
    Math.max(0, v + bias[i % 12])
  );
  assert.ok(maxAbsDiff(fused, ref) < 1e-4);
});

Deno.test("gradients through the fixed kernels (no BLAS) match the cpu backend", async () => {
  const rng = new Rng(11);
  const x = randomMatrix(rng, 16, 9);
  const w = randomMatrix(rng, 9, 7);
  const loss = (wt: tf.Tensor) =>
    tf.sum(tf.square(tf.relu(tf.matMul(tf.tensor2d(x, [16, 9]), wt as tf.Tensor2D))));
  const gradOn = async (backend: "wasm" | "cpu") => {
    const info = await initBackend(backend, { blas: "off" });
    assert.ok(!("kind" in info));
    return tf.tidy(() => tf.grad(loss)(tf.tensor2d(w, [9, 7])).dataSync());
  };
  const onCpu = await gradOn("cpu");
  const onWasm = await gradOn("wasm");
  assert.ok(maxAbsDiff(onWasm, onCpu) < 1e-3 * Math.max(...onCpu.map(Math.abs)));
  assert.ok(Math.max(...onCpu.map(Math.abs)) > 0);
});
