/**
 * Tensor backends, chosen once per process: `tensorflow` (native libtensorflow through
 * tfjs-node-gpu or tfjs-node, only when the user has installed one), `wasm` (the default, with as
 * many threads as cores) and `cpu` (plain JavaScript, slow, the reference).
 *
 * On wasm, tfjs 4.22's matmul kernel is ≈ 12× slower when asked to transpose an operand (measured
 * in the platform notes: 24–27 ms against 1.5–2.4 ms for 256×256), and every backward pass asks for
 * transposes. `installWasmTransposeFix` re-registers the kernels so that they materialize the
 * transpose first and call the fast untransposed kernel.
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { type PipelineError, pipelineError } from "../core/errors.ts";

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

let started: BackendInfo | undefined;

/**
 * Starts a backend (idempotent for the same name). Resolves to a `PipelineError` value, never
 * rejects, when the backend is missing or fails to start.
 */
export async function initBackend(name: BackendName): Promise<BackendInfo | PipelineError> {
  if (started && started.name === name) return started;
  try {
    const info = name === "wasm"
      ? await startWasm()
      : name === "cpu"
      ? await startCpu()
      : await startTensorflow();
    if ("kind" in info) return info;
    started = info;
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

async function startWasm(): Promise<BackendInfo> {
  // A static import leaves the registry empty in Deno (platform notes); import after tfjs.
  const wasm = await import("@tensorflow/tfjs-backend-wasm");
  wasm.setThreadsCount(Math.max(1, navigator.hardwareConcurrency || 1)); // must precede setBackend
  if (!(await tf.setBackend("wasm"))) throw new Error("tf.setBackend('wasm') returned false");
  await tf.ready();
  installWasmTransposeFix();
  // What actually runs: tfjs only uses its threaded build where it detects wasm-thread support,
  // which it does not under Deno (WASM_HAS_MULTITHREAD_SUPPORT is false), so this is usually 1.
  return { name: "wasm", label: "wasm", threads: wasm.getThreadsCount(), tfjsVersion: tf.version.tfjs };
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

let fixInstalled = false;

/**
 * Replaces the wasm `BatchMatMul` and `_FusedMatMul` kernels with wrappers that transpose operands
 * explicitly (a cheap copy) and then call the original kernel untransposed. Idempotent.
 */
export function installWasmTransposeFix(): void {
  if (fixInstalled) return;
  for (const kernelName of ["BatchMatMul", "_FusedMatMul"]) {
    const original = tf.getKernel(kernelName, "wasm");
    if (!original) throw new Error(`wasm kernel ${kernelName} not registered`);
    const transpose = tf.getKernel("Transpose", "wasm");
    if (!transpose) throw new Error("wasm kernel Transpose not registered");
    tf.unregisterKernel(kernelName, "wasm");
    tf.registerKernel({
      ...original,
      kernelFunc: (args) => {
        const { inputs, attrs, backend } = args as unknown as {
          inputs: Record<string, tf.TensorInfo>;
          attrs: Record<string, unknown>;
          backend: { disposeData(id: unknown): void };
        };
        if (!attrs.transposeA && !attrs.transposeB) return original.kernelFunc(args);
        const temporaries: tf.TensorInfo[] = [];
        const materialize = (x: tf.TensorInfo): tf.TensorInfo => {
          const rank = x.shape.length;
          const perm = [...Array(rank).keys()];
          [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1], perm[rank - 2]];
          const out = transpose.kernelFunc(
            { inputs: { x }, attrs: { perm }, backend } as never,
          ) as tf.TensorInfo;
          temporaries.push(out);
          return out;
        };
        const a = attrs.transposeA ? materialize(inputs.a) : inputs.a;
        const b = attrs.transposeB ? materialize(inputs.b) : inputs.b;
        const result = original.kernelFunc({
          ...args,
          inputs: { ...inputs, a, b },
          attrs: { ...attrs, transposeA: false, transposeB: false },
        } as never);
        for (const t of temporaries) backend.disposeData(t.dataId);
        return result;
      },
    });
  }
  fixInstalled = true;
}
