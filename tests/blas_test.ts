/**
 * The native matmul kernels (numerics/blas_kernels.ts) against the pure wasm kernels and a float64
 * reference on the shapes the code uses, gradients through them, the start-up self-check, and the
 * discovery's permissions and bad-input lines (numerics/blas.ts), run as a task runs.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import * as tf from "@tensorflow/tfjs";
import { checkBlas, initBackend } from "../numerics/backend.ts";
import type { BlasLibrary } from "../numerics/blas.ts";
import { activeBlas, useWasmMatMul } from "../numerics/blas_kernels.ts";
import { Rng } from "../numerics/random.ts";
import { REPO_ROOT, taskFlags } from "./helpers.ts";

/** Debian's OpenBLAS, which tests/setup-debian.sh installs: these tests require it. */
const DEBIAN_OPENBLAS = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0";
const LIBM = ["/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib/x86_64-linux-gnu/libm.so.6"].find(existsSync);

async function startWithBlas(): Promise<BlasLibrary> {
  assert.ok(existsSync(DEBIAN_OPENBLAS), `${DEBIAN_OPENBLAS} is missing: run tests/setup-debian.sh`);
  const info = await initBackend("wasm", { blas: "auto" });
  assert.ok(!("kind" in info), JSON.stringify(info));
  assert.match(info.label, /^wasm\+openblas-\d+\.\d+\.\d+$/);
  assert.equal(info.blas?.threads, 1, "the BLAS must run single-threaded");
  const lib = activeBlas();
  assert.ok(lib, "initBackend found a BLAS but the kernels do not call it");
  return lib;
}

type Shape = readonly number[];

/** op(A)·op(B) in float64 with numpy batch broadcasting: the independent reference. */
function reference(a: Float32Array, aShape: Shape, b: Float32Array, bShape: Shape, tA: boolean, tB: boolean) {
  const ar = aShape.length, br = bShape.length;
  const [ra, ca] = [aShape[ar - 2], aShape[ar - 1]], [rb, cb] = [bShape[br - 2], bShape[br - 1]];
  const m = tA ? ca : ra, k = tA ? ra : ca, n = tB ? rb : cb;
  const aB = aShape.slice(0, -2), bB = bShape.slice(0, -2);
  const rank = Math.max(aB.length, bB.length);
  const pad = (s: Shape) => [...Array(rank - s.length).fill(1), ...s];
  const pa = pad(aB), pb = pad(bB);
  const batch = pa.map((d, i) => Math.max(d, pb[i]));
  const count = batch.reduce((p, d) => p * d, 1);
  const out = new Float64Array(count * m * n);
  const flat = (coords: number[], s: number[]) =>
    coords.reduce((f, c, i) => f * s[i] + (s[i] === 1 ? 0 : c), 0);
  for (let t = 0; t < count; t++) {
    const coords: number[] = [];
    for (let i = rank - 1, r = t; i >= 0; i--) {
      coords[i] = r % batch[i];
      r = Math.floor(r / batch[i]);
    }
    const oa = flat(coords, pa) * ra * ca, ob = flat(coords, pb) * rb * cb;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) {
          s += a[oa + (tA ? p * ca + i : i * ca + p)] * b[ob + (tB ? j * cb + p : p * cb + j)];
        }
        out[(t * m + i) * n + j] = s;
      }
    }
  }
  return { values: out, shape: [...batch, m, n] };
}

function assertClose(got: ArrayLike<number>, want: ArrayLike<number>, what: string, tolerance = 1e-5) {
  assert.equal(got.length, want.length, what);
  let scale = 1;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(got[i] - want[i]);
    if (!(d <= tolerance * scale)) assert.fail(`${what}: element ${i} is ${got[i]}, expected ${want[i]}`);
  }
}

/** The stored shape of an operand of logical size rows × cols under a transpose flag. */
const stored = (
  batch: Shape,
  rows: number,
  cols: number,
  t: boolean,
) => [...batch, ...(t ? [cols, rows] : [rows, cols])];

const FLAGS = [[false, false], [true, false], [false, true], [true, true]] as const;

/** [batch of A, batch of B, m, k, n]: 1-sized dims, odd sizes, batches, broadcast batches, k = 0. */
const CASES: readonly [Shape, Shape, number, number, number][] = [
  [[], [], 1, 1, 1],
  [[], [], 1, 7, 1],
  [[], [], 7, 1, 5],
  [[], [], 1, 9, 4],
  [[], [], 5, 9, 1],
  [[], [], 37, 53, 29],
  [[], [], 256, 17, 256],
  [[3], [3], 4, 5, 6],
  [[3], [], 4, 5, 6], // one B for every batch: one sgemm with the batches as rows (when A is untransposed)
  [[], [3], 4, 5, 6],
  [[2, 3], [3], 4, 5, 6],
  [[2, 1], [1, 3], 4, 5, 6], // both sides broadcast
  [[3], [3], 1, 5, 1],
  [[], [], 3, 0, 4], // empty inner dimension: zeros
];

Deno.test("BLAS matmuls equal the float64 reference and the wasm kernel on every shape and transpose", async () => {
  const lib = await startWithBlas();
  const rng = new Rng(3);
  try {
    for (const [aBatch, bBatch, m, k, n] of CASES) {
      for (const [tA, tB] of FLAGS) {
        const aShape = stored(aBatch, m, k, tA), bShape = stored(bBatch, k, n, tB);
        const a = rng.fillNormal(new Float32Array(aShape.reduce((p, d) => p * d, 1)));
        const b = rng.fillNormal(new Float32Array(bShape.reduce((p, d) => p * d, 1)));
        const what = `A ${aShape} · B ${bShape}, transposeA=${tA}, transposeB=${tB}`;
        const product = () =>
          tf.tidy(() => {
            const c = tf.matMul(tf.tensor(a, aShape), tf.tensor(b, bShape), tA, tB);
            return { values: c.dataSync().slice(), shape: c.shape };
          });
        useWasmMatMul(lib);
        const got = product();
        const want = reference(a, aShape, b, bShape, tA, tB);
        assert.deepEqual(got.shape, want.shape, what);
        assertClose(got.values, want.values, `${what} against float64`);
        // tfjs-wasm flattens batch dims, so it only agrees where at most one side is batched or both match.
        const twoSided = aBatch.some((d, i) => d === 1 && (bBatch[i] ?? 1) > 1) && aBatch.some((d) => d > 1);
        if (!twoSided && k > 0) {
          useWasmMatMul(undefined);
          assertClose(got.values, product().values, `${what} against the wasm kernel`);
        }
      }
    }
  } finally {
    useWasmMatMul(lib);
  }
});

Deno.test("fused BLAS matmuls: bias per column or scalar, every activation, batches; PReLU falls back", async () => {
  const lib = await startWithBlas();
  const rng = new Rng(5);
  const activations: Record<string, (x: number) => number> = {
    linear: (x) => x,
    relu: (x) => Math.max(0, x),
    relu6: (x) => Math.min(6, Math.max(0, x)),
    elu: (x) => x < 0 ? Math.expm1(x) : x,
    leakyrelu: (x) => x < 0 ? 0.1 * x : x,
    sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  };
  try {
    for (
      const [aBatch, bBatch, m, k, n] of [[[], [], 8, 16, 12], [[2], [2], 4, 5, 6], [
        [3],
        [],
        1,
        5,
        1,
      ]] as const
    ) {
      for (const [tA, tB] of FLAGS) {
        for (const biasSize of [n, 1]) {
          for (const [name, f] of Object.entries(activations)) {
            const aShape = stored(aBatch, m, k, tA), bShape = stored(bBatch, k, n, tB);
            const a = rng.fillNormal(new Float32Array(aShape.reduce((p, d) => p * d, 1)), 2);
            const b = rng.fillNormal(new Float32Array(bShape.reduce((p, d) => p * d, 1)));
            const bias = rng.fillNormal(new Float32Array(biasSize));
            const run = () =>
              tf.tidy(() =>
                tf.fused.matMul({
                  a: tf.tensor(a, aShape) as unknown as tf.Tensor3D,
                  b: tf.tensor(b, bShape) as unknown as tf.Tensor3D,
                  transposeA: tA,
                  transposeB: tB,
                  bias: tf.tensor1d(bias),
                  activation: name as tf.fused.Activation,
                  leakyreluAlpha: 0.1,
                }).dataSync().slice()
              );
            useWasmMatMul(lib);
            const got = run();
            const want = reference(a, aShape, b, bShape, tA, tB).values.map((v, i) =>
              f(v + bias[biasSize === 1 ? 0 : i % n])
            );
            const what = `${name}, bias of ${biasSize}, A ${aShape} · B ${bShape}, tA=${tA}, tB=${tB}`;
            assertClose(got, want, what);
            // The wasm kernel takes a rank-1 bias of n only, and gets batched products wrong (the BLAS
            // path above matched the float64 reference on the same batches).
            if (biasSize === n && aBatch.length === 0) {
              useWasmMatMul(undefined);
              assertClose(got, run(), `${what} against the wasm kernel`);
            }
          }
        }
      }
    }
    // PReLU is not computed on the BLAS path: the original kernel gives it, the same with and without.
    const x = rng.fillNormal(new Float32Array(4 * 6)), w = rng.fillNormal(new Float32Array(6 * 3));
    const slopes = Float32Array.from([0.1, 0.2, 0.3]);
    const prelu = () =>
      tf.tidy(() =>
        tf.fused.matMul({
          a: tf.tensor2d(x, [4, 6]),
          b: tf.tensor2d(w, [6, 3]),
          activation: "prelu",
          preluActivationWeights: tf.tensor1d(slopes),
        }).dataSync().slice()
      );
    useWasmMatMul(lib);
    const viaFallback = prelu();
    const want = reference(x, [4, 6], w, [6, 3], false, false).values.map((v, i) =>
      v < 0 ? v * slopes[i % 3] : v
    );
    assertClose(viaFallback, want, "prelu");
  } finally {
    useWasmMatMul(lib);
  }
});

Deno.test("gradients through the BLAS kernels equal the pure wasm and the cpu backend's", async () => {
  const rng = new Rng(11);
  const x = rng.fillNormal(new Float32Array(16 * 9));
  const w1 = rng.fillNormal(new Float32Array(9 * 32)), b1 = rng.fillNormal(new Float32Array(32));
  const w2 = rng.fillNormal(new Float32Array(32 * 3));
  // A two-layer network (fused first layer, batched copy of the second) and its gradient in every input.
  const loss = (xs: tf.Tensor, a: tf.Tensor, bias: tf.Tensor, c: tf.Tensor) => {
    const h = tf.fused.matMul({ a: xs as tf.Tensor2D, b: a as tf.Tensor2D, bias, activation: "relu" });
    const y = tf.matMul(h, c as tf.Tensor2D);
    const batched = tf.matMul(
      tf.stack([h, tf.mul(h, 0.5)]) as tf.Tensor3D,
      tf.stack([c, tf.mul(c, -2)]) as tf.Tensor3D,
    );
    return tf.add(tf.sum(tf.square(y)), tf.sum(tf.tanh(batched)));
  };
  const grads = () =>
    tf.tidy(() =>
      tf.grads(loss)([
        tf.tensor2d(x, [16, 9]),
        tf.tensor2d(w1, [9, 32]),
        tf.tensor1d(b1),
        tf.tensor2d(w2, [32, 3]),
      ])
        .map((g) => g.dataSync().slice())
    );
  const lib = await startWithBlas();
  const onBlas = grads();
  useWasmMatMul(undefined);
  const onWasm = grads();
  useWasmMatMul(lib);
  assert.ok(!("kind" in await initBackend("cpu")));
  const onCpu = grads();
  await startWithBlas();
  for (let i = 0; i < onBlas.length; i++) {
    assert.ok(Math.max(...onCpu[i].map(Math.abs)) > 1e-3, "a meaningful gradient");
    assertClose(onBlas[i], onCpu[i], `gradient ${i} against the cpu backend`, 1e-4);
    assertClose(onBlas[i], onWasm[i], `gradient ${i} against the wasm kernels`, 1e-4);
  }
});

Deno.test("the start-up self-check passes the BLAS and refuses a wrong one with the numbers", async () => {
  const lib = await startWithBlas();
  try {
    assert.equal(checkBlas(lib), undefined);
    const wrong: BlasLibrary = {
      ...lib,
      sgemm(...args) {
        lib.sgemm(...args);
        args[11][0] += 0.5; // one wrong element, as a broken kernel gives
      },
    };
    assert.match(checkBlas(wrong) ?? "", /element 0 is -?[\d.]+(e-?\d+)?, the wasm kernel gives -?[\d.]+/);
  } finally {
    useWasmMatMul(lib);
  }
});

/** The probe fixture under `flags`, with `OBD_BLAS` set where given: its JSON line and stderr. */
async function probe(flags: readonly string[], blas: string | undefined, other?: string) {
  const env: Record<string, string> = {};
  if (blas !== undefined) env.OBD_BLAS = blas;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...flags, "tests/fixtures/blas_probe.ts", ...(other ? [other] : [])],
    cwd: REPO_ROOT,
    env,
    clearEnv: false,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout).trim();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.ok(stdout, stderr);
  return { result: JSON.parse(stdout.split("\n").pop()!), stderr };
}

Deno.test("under the pipeline task's flags the BLAS loads and no other library does", async () => {
  assert.ok(existsSync(DEBIAN_OPENBLAS), `${DEBIAN_OPENBLAS} is missing: run tests/setup-debian.sh`);
  assert.ok(LIBM, "libm not found");
  const flags = taskFlags("pipeline");
  const { result, stderr } = await probe(flags, "auto", LIBM);
  assert.match(result.label, /^wasm\+openblas-/);
  assert.equal(result.path, DEBIAN_OPENBLAS);
  assert.equal(result.other, "NotCapable", "a library outside the candidates must not load");
  assert.match(stderr, /\[backend\] wasm\+openblas-[\d.]+: .*libopenblas\.so\.0, 1 BLAS thread/);
  // The same library under a path the task does not name is refused too.
  const sameLibrary = await probe(flags, "auto", "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3");
  assert.equal(sameLibrary.result.other, "NotCapable");
  // OBD_BLAS=off: pure wasm, said in one line.
  const off = await probe(flags, "off");
  assert.equal(off.result.label, "wasm");
  assert.match(off.stderr, /\[backend\] BLAS off \(OBD_BLAS=off\)/);
});

Deno.test("bad OBD_BLAS values: one line naming the path and the fix, before any work", async () => {
  assert.ok(LIBM, "libm not found");
  const flags = taskFlags("pipeline");
  const outside = await probe(flags, "/tmp/not-granted/libopenblas.so.0");
  assert.match(
    outside.result.error,
    /^error\[config\]: OBD_BLAS=\/tmp\/not-granted\/libopenblas\.so\.0 is not a library this command may load .* add --allow-ffi=\/tmp\/not-granted\/libopenblas\.so\.0/,
  );
  const missing = "/tmp/obd-no-such-blas.so";
  const absent = await probe([...flags, `--allow-ffi=${missing}`], missing);
  assert.match(
    absent.result.error,
    /^error\[config\]: OBD_BLAS=\/tmp\/obd-no-such-blas\.so: no such library file/,
  );
  const notBlas = await probe([...flags, `--allow-ffi=${LIBM}`], LIBM);
  assert.match(notBlas.result.error, new RegExp(`^error\\[config\\]: OBD_BLAS=${LIBM} has no cblas_sgemm`));
  for (const r of [outside, absent, notBlas]) {
    assert.equal(r.result.error.split("\n").length, 1);
    assert.doesNotMatch(r.stderr, /\bat .*\.ts:\d+/, "no stack trace");
  }
  // A user's own path works with its flag.
  const own = await probe([...flags, `--allow-ffi=${DEBIAN_OPENBLAS}`], DEBIAN_OPENBLAS);
  assert.match(own.result.label, /^wasm\+openblas-/);
});

Deno.test("every task that computes on wasm grants exactly the BLAS candidates and OBD_BLAS", async () => {
  const { BLAS_CANDIDATES } = await import("../numerics/blas.ts");
  for (const task of ["pipeline", "grid", "density", "teacher", "bench", "test"]) {
    const flags = taskFlags(task);
    const ffi = flags.filter((f) => f.startsWith("--allow-ffi"));
    assert.deepEqual(ffi, [`--allow-ffi=${BLAS_CANDIDATES.join(",")}`], task);
    const env = flags.find((f) => f.startsWith("--allow-env"));
    assert.ok(env === "--allow-env" || env?.split(/[=,]/).includes("OBD_BLAS"), `${task}: ${env}`);
  }
});

Deno.test("sums over leading axes on the BLAS equal the float64 sums and the wasm kernel; shared copies outlive their source", async () => {
  const lib = await startWithBlas();
  const rng = new Rng(17);
  try {
    const cases: [number[], number | number[], boolean][] = [
      [[37, 29], 0, false],
      [[37, 29], [0], true],
      [[2, 3, 5], [0, 1], false],
      [[2, 3, 5], [-3], true],
      [[7936, 256], 0, false], // a bias gradient of Cal-QL's critic pass
      [[4, 6], 1, false], // trailing axis: the wasm kernel
      [[4, 6], [0, 1], false], // every axis: the wasm kernel
    ];
    for (const [shape, axis, keepDims] of cases) {
      const x = rng.fillNormal(new Float32Array(shape.reduce((p, d) => p * d, 1)));
      const run = () =>
        tf.tidy(() => {
          const s = tf.sum(tf.tensor(x, shape), axis, keepDims);
          return { values: s.dataSync().slice(), shape: s.shape };
        });
      useWasmMatMul(lib);
      const got = run();
      useWasmMatMul(undefined);
      const wasm = run();
      assert.deepEqual(got.shape, wasm.shape, `${shape} over ${axis}`);
      // float64 reference over the leading axes (the cases above with leading axes only)
      const axes = ([] as number[]).concat(axis).map((a) => a < 0 ? a + shape.length : a);
      if (axes.every((a, i) => a === i) && axes.length < shape.length) {
        const cols = shape.slice(axes.length).reduce((p, d) => p * d, 1), rows = x.length / cols;
        const want = new Float64Array(cols);
        for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) want[c] += x[r * cols + c];
        assertClose(got.values, want, `${shape} over ${axis} against float64`, 1e-5);
      }
      assertClose(got.values, wasm.values, `${shape} over ${axis} against the wasm kernel`, 1e-5);
    }
    useWasmMatMul(lib);
    // Identity and same-dtype Cast share the data: the copy must survive its source's disposal.
    const a = tf.tensor1d([1, 2, 3]);
    const b = tf.clone(a), c = tf.cast(a, "float32"), d = tf.cast(a, "int32");
    a.dispose();
    assert.deepEqual([...b.dataSync()], [1, 2, 3]);
    assert.deepEqual([...c.dataSync()], [1, 2, 3]);
    assert.equal(d.dtype, "int32");
    tf.dispose([b, c, d]);
  } finally {
    useWasmMatMul(lib);
  }
});
