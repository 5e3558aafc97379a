/**
 * Tensor backends, chosen once per process: `tensorflow` (native libtensorflow through
 * tfjs-node-gpu or tfjs-node, only when the user has installed one), `wasm` (the default, with as
 * many threads as cores) and `cpu` (plain JavaScript, slow, the reference).
 *
 * On wasm, matmuls go to the system's BLAS where one is found (`OBD_BLAS`, `blas.ts`;
 * `blas_kernels.ts`), checked at start against the wasm kernel; without one, to tfjs's own kernel
 * on untransposed operands (its transposed path is ≈ 12× slower).
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { type PipelineError, pipelineError } from "../core/errors.ts";
import { type BlasLibrary, findBlas, requestedBlas } from "./blas.ts";
import { useWasmMatMul } from "./blas_kernels.ts";

/** Backend names accepted by `--backend` and `OBD_BACKEND`. */
export const BACKENDS = ["tensorflow", "wasm", "cpu"] as const;
/** One of `BACKENDS`. */
export type BackendName = (typeof BACKENDS)[number];

/** What was started, for logs and manifests. */
export interface BackendInfo {
  /** The backend that was started. */
  readonly name: BackendName;
  /** e.g. `wasm`, `cpu`, `tensorflow:tfjs-node-gpu` — recorded in every manifest. */
  readonly label: string;
  /** Threads the backend computes with. */
  readonly threads: number;
  /** Version of tfjs in use. */
  readonly tfjsVersion: string;
  /** The BLAS the wasm matmuls call (absent: none, or another backend). */
  readonly blas?: {
    readonly vendor: string;
    readonly version: string;
    readonly path: string;
    readonly threads: number;
    readonly config: string;
  };
}

/** Options of {@link initBackend}. */
export interface BackendOptions {
  /** For wasm: `auto`, `off` or a library path (default: `OBD_BLAS`, else `auto`). */
  readonly blas?: string;
}

/** Environment variable that selects the backend when `--backend` is not given. */
export const BACKEND_ENV = "OBD_BACKEND";

/** The backend requested by a flag, else the environment, else `wasm`. */
export function requestedBackend(
  flag: string | undefined,
  env: string | undefined,
): BackendName | PipelineError {
  const name = flag ?? env ?? "wasm";
  if ((BACKENDS as readonly string[]).includes(name)) return name as BackendName;
  const source = flag !== undefined ? "--backend" : BACKEND_ENV;
  return pipelineError(
    "config",
    `unknown backend "${name}" from ${source}`,
    `choose one of ${BACKENDS.join(", ")}`,
  );
}

let started: { info: BackendInfo; blas: string } | undefined;

/**
 * Starts a backend (idempotent for the same name and BLAS choice). Resolves to a `PipelineError`
 * value, never rejects, when the backend is missing or fails to start, or when the requested BLAS
 * cannot be used.
 */
export async function initBackend(
  name: BackendName,
  options: BackendOptions = {},
): Promise<BackendInfo | PipelineError> {
  const blas = options.blas ?? requestedBlas();
  if (started && started.info.name === name && (name !== "wasm" || started.blas === blas)) {
    if (tf.getBackend() === name) return started.info;
  }
  try {
    const info = name === "wasm"
      ? await startWasm(blas)
      : name === "cpu"
      ? await startCpu()
      : await startTensorflow();
    if ("kind" in info) return info;
    started = { info, blas };
    return info;
  } catch (e) {
    return pipelineError(
      "backend",
      `backend ${name} failed to start: ${(e as Error).message}`,
      "try --backend cpu",
    );
  }
}

async function startCpu(): Promise<BackendInfo> {
  // PROD silences the cpu backend's "install tfjs-node" banner, which would pollute every log.
  tf.env().set("PROD", true);
  await tf.setBackend("cpu");
  await tf.ready();
  return { name: "cpu", label: "cpu", threads: 1, tfjsVersion: tf.version.tfjs };
}

async function startWasm(request: string): Promise<BackendInfo | PipelineError> {
  const choice = findBlas(request); // bad OBD_BLAS values fail here, before any work
  if ("kind" in choice) return choice;
  // A static import leaves the registry empty in Deno (platform notes); import after tfjs.
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  wasm.setThreadsCount(Math.max(1, navigator.hardwareConcurrency || 1)); // must precede setBackend
  if (!(await tf.setBackend("wasm"))) throw new Error("tf.setBackend('wasm') returned false");
  await tf.ready();
  // What actually runs: tfjs only uses its threaded build where it detects wasm-thread support,
  // which it does not under Deno (WASM_HAS_MULTITHREAD_SUPPORT is false), so this is usually 1.
  const base = { name: "wasm" as const, threads: wasm.getThreadsCount(), tfjsVersion: tf.version.tfjs };
  useWasmMatMul(undefined);
  if (!choice.found) {
    say(choice.notice);
    return { ...base, label: "wasm" };
  }
  const lib = choice.library;
  const mismatch = checkBlas(lib);
  if (mismatch) {
    useWasmMatMul(undefined);
    return pipelineError(
      "backend",
      `the BLAS at ${lib.path} (${lib.label}) computes wrong products: ${mismatch}`,
      `set OBD_BLAS=off to compute on pure wasm, or another library with OBD_BLAS=<path>${
        lib.vendor === "openblas"
          ? " (for OpenBLAS, OPENBLAS_CORETYPE=Haswell avoids broken AVX-512 kernels)"
          : ""
      }`,
    );
  }
  say(`${lib.label}: ${lib.path}, ${lib.threads || "?"} BLAS thread${lib.threads === 1 ? "" : "s"}`);
  return {
    ...base,
    label: lib.label,
    blas: {
      vendor: lib.vendor,
      version: lib.version,
      path: lib.path,
      threads: lib.threads,
      config: lib.config,
    },
  };
}

const said = new Set<string>();

/** One line on stderr, once per process, from the main thread only (workers start the same way). */
function say(line: string): void {
  if (said.has(line) || typeof (globalThis as { document?: unknown }).document !== "undefined") return;
  if ("WorkerGlobalScope" in globalThis) return;
  said.add(line);
  console.error(`[backend] ${line}`);
}

/**
 * The start-up check: products through `lib` against the wasm kernel, all transpose flags, two
 * sizes. Returns the worst difference, described, when it exceeds float32 rounding, else undefined.
 * Leaves the wasm matmuls calling `lib`. Needs the wasm backend started.
 */
export function checkBlas(lib: BlasLibrary): string | undefined {
  let seed = 12345;
  const next = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32) * 2 - 1;
  for (const [m, k, n] of [[37, 67, 29], [96, 128, 80]]) {
    for (const [tA, tB] of [[false, false], [true, false], [false, true], [true, true]]) {
      const a = Float32Array.from({ length: m * k }, next), b = Float32Array.from({ length: k * n }, next);
      const product = () =>
        tf.tidy(() =>
          tf.matMul(tf.tensor2d(a, tA ? [k, m] : [m, k]), tf.tensor2d(b, tB ? [n, k] : [k, n]), tA, tB)
            .dataSync()
        );
      useWasmMatMul(undefined);
      const reference = product();
      useWasmMatMul(lib);
      const got = product();
      let worst = 0, at = 0, scale = 0;
      for (let i = 0; i < got.length; i++) {
        scale = Math.max(scale, Math.abs(reference[i]));
        const d = Math.abs(got[i] - reference[i]);
        if (!(d <= worst)) [worst, at] = [d, i];
      }
      if (!(worst <= 1e-4 * Math.max(1, scale))) {
        return `${m}×${k}·${k}×${n} (transposeA=${tA}, transposeB=${tB}): element ${at} is ${
          got[at]
        }, the wasm kernel gives ${reference[at]} (max |difference| ${worst.toExponential(2)})`;
      }
    }
  }
  return undefined;
}

const NATIVE_PACKAGES = ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"] as const;

async function startTensorflow(): Promise<BackendInfo | PipelineError> {
  // Only look for a package the user installed: importing by name would make Deno fetch it, and
  // its install script downloads libtensorflow, which fails on machines without that host.
  for (const pkg of NATIVE_PACKAGES) {
    const entry = new URL(`../node_modules/${pkg}/package.json`, import.meta.url);
    if (!existsSync(entry)) continue;
    const specifier = `npm:${pkg}@4.22.0`;
    await import(specifier);
    if (!(await tf.setBackend("tensorflow"))) {
      throw new Error(`${pkg} loaded but registered no "tensorflow" backend`);
    }
    await tf.ready();
    return {
      name: "tensorflow",
      label: `tensorflow:${pkg.split("/")[1]}`,
      threads: navigator.hardwareConcurrency || 1,
      tfjsVersion: tf.version.tfjs,
    };
  }
  return pipelineError(
    "backend",
    "backend tensorflow needs @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node, and neither is installed",
    "install one with `deno install --allow-scripts npm:@tensorflow/tfjs-node@4.22.0` (its script downloads libtensorflow) and use `deno task pipeline-native`, or choose --backend wasm",
  );
}
