/**
 * The meta-gradient on K worker threads, data-parallel over the synthetic set's rows: each worker
 * runs {@link metaGradientSlice} on a contiguous slice of X, Y and of the real states, and the
 * partial sums every slice shares (∇_θ ℓ, the Hessian-vector products, ∇_θ H, the losses) meet in a
 * shared-memory all-reduce that adds the slices in a fixed order, so that all workers hold
 * bitwise-identical weights. With one thread, or on the native backend, {@link MetaGradientPool}
 * runs on the calling thread. The maths is in `metagradient.ts`; this module only moves numbers.
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { activeBlas } from "../../numerics/blas_kernels.ts";
import { mlpTensors, type MlpWeights, tidyPlain } from "../../numerics/mlp.ts";
import {
  type AllReduce,
  type InnerLoopOptions,
  metaGradient,
  metaGradientSlice,
  type Slicing,
} from "./metagradient.ts";

/** One meta-gradient problem as plain arrays (what crosses to worker threads). */
export interface MetaGradientProblem {
  /** θ_0, the student's initial weights (`sizes` = [d, hidden…, m]). */
  readonly initial: MlpWeights;
  /** X, the synthetic states, `N × d` row-major. */
  readonly states: Float32Array;
  /** Y, the synthetic actions, `N × m` row-major. */
  readonly actions: Float32Array;
  /** The outer batch: real states `B × d`, targets `B × m`, optional weights `B`. */
  readonly outer: {
    readonly states: Float32Array;
    readonly targets: Float32Array;
    readonly weights?: Float32Array;
  };
  /** The inner loop. */
  readonly options: InnerLoopOptions;
}

/** `MetaGradient` as plain arrays and numbers. */
export interface MetaGradientValues {
  /** ∂H/∂X, `N × d`. */
  readonly states: Float32Array;
  /** ∂H/∂Y, `N × m`. */
  readonly actions: Float32Array;
  /** H(θ_T). */
  readonly outerLoss: number;
  /** ℓ(θ_{T−1}). */
  readonly innerLoss: number;
}

/** Environment variable giving the worker threads of the meta-gradient (default 1: the calling thread). */
export const THREADS_ENV = "OBD_THREADS";

/**
 * Threads requested through `OBD_THREADS`: a positive integer, or `auto` for one per core; 1 when
 * unset, unreadable (no `--allow-env` for it) or invalid.
 */
export function requestedMetaGradientThreads(): number {
  let raw: string | undefined;
  try {
    if (Deno.permissions.querySync({ name: "env", variable: THREADS_ENV }).state !== "granted") return 1;
    raw = Deno.env.get(THREADS_ENV);
  } catch {
    return 1;
  }
  if (raw === undefined || raw === "") return 1;
  if (raw === "auto") return Math.max(1, navigator.hardwareConcurrency || 1);
  const k = Number(raw);
  return Number.isInteger(k) && k >= 1 ? k : 1;
}

/** Rows `[start, end)` of slice `k` of `rows` rows cut into `parts` contiguous slices. */
export function sliceBounds(rows: number, parts: number, k: number): [number, number] {
  return [Math.floor((k * rows) / parts), Math.floor(((k + 1) * rows) / parts)];
}

/** What the pool sends a worker for one meta-gradient (its slices, copied). */
export interface WorkerJob {
  readonly kind: "job";
  /** This worker's slice index and the number of slices. */
  readonly index: number;
  readonly parts: number;
  readonly initial: MlpWeights;
  readonly states: Float32Array;
  readonly actions: Float32Array;
  readonly outerStates: Float32Array;
  readonly outerTargets: Float32Array;
  readonly outerWeights?: Float32Array;
  readonly synsetRows: number;
  readonly outerRows: number;
  readonly options: InnerLoopOptions;
  /** 2 × parts slots of `slot` floats: double-buffered partial sums. */
  readonly exchange: Float32Array;
  readonly slot: number;
  /** Barrier and abort flag (`CONTROL_*`). */
  readonly control: Int32Array;
}

/** A worker's answer to a job. */
export type WorkerReply =
  | {
    readonly ok: true;
    readonly states: Float32Array;
    readonly actions: Float32Array;
    readonly outerLoss: number;
    readonly innerLoss: number;
    readonly timing?: ReduceTiming;
  }
  | { readonly ok: false; readonly error: string };

/** Indices into a job's `control`: barrier arrivals, barrier generation, abort flag. */
export const CONTROL_COUNT = 0, CONTROL_GENERATION = 1, CONTROL_ABORT = 2;

/** Marks a job as failed and wakes every worker waiting at its barrier. */
export function abortJob(control: Int32Array): void {
  Atomics.store(control, CONTROL_ABORT, 1);
  Atomics.add(control, CONTROL_GENERATION, 1);
  Atomics.notify(control, CONTROL_GENERATION);
}

/** Waits until all `parts` workers have arrived; throws if the job was aborted. */
function barrier(control: Int32Array, parts: number): void {
  const generation = Atomics.load(control, CONTROL_GENERATION);
  if (Atomics.add(control, CONTROL_COUNT, 1) === parts - 1) {
    Atomics.store(control, CONTROL_COUNT, 0);
    Atomics.add(control, CONTROL_GENERATION, 1);
    Atomics.notify(control, CONTROL_GENERATION);
  } else {
    while (Atomics.load(control, CONTROL_GENERATION) === generation) {
      Atomics.wait(control, CONTROL_GENERATION, generation);
    }
  }
  if (Atomics.load(control, CONTROL_ABORT) !== 0) throw new Error("another meta-gradient worker failed");
}

/**
 * The all-reduce of slice `index` of `parts` over shared memory: write this slice's partial sums
 * into its slot, wait for every slice, then add the slots in the fixed order 0, 1, …, parts − 1 in
 * float32, so every slice obtains the same bits. Two banks of slots alternate, so one barrier per
 * call suffices (a slice can only overwrite a bank after everyone has passed the next barrier,
 * i.e. finished reading it).
 */
export function sharedAllReduce(
  exchange: Float32Array,
  slot: number,
  control: Int32Array,
  index: number,
  parts: number,
  timing?: ReduceTiming,
): AllReduce {
  let round = 0;
  return (tensors) => {
    const total = tensors.reduce((s, t) => s + t.size, 0);
    if (total > slot) throw new Error(`all-reduce of ${total} values exceeds the slot of ${slot}`);
    const bank = (round++ % 2) * parts;
    let offset = (bank + index) * slot;
    const t0 = timing ? performance.now() : 0;
    for (const t of tensors) {
      exchange.set(t.dataSync() as Float32Array, offset);
      offset += t.size;
    }
    const t1 = timing ? performance.now() : 0;
    barrier(control, parts);
    const t2 = timing ? performance.now() : 0;
    if (timing) {
      timing.calls++;
      timing.readMs += t1 - t0;
      timing.waitMs += t2 - t1;
    }
    const sum = exchange.slice(bank * slot, bank * slot + total);
    for (let k = 1; k < parts; k++) {
      const from = (bank + k) * slot;
      for (let i = 0; i < total; i++) sum[i] += exchange[from + i];
    }
    let at = 0;
    const out = tensors.map((t) => {
      const reduced = tf.tensor(sum.subarray(at, at + t.size), t.shape, "float32");
      at += t.size;
      return reduced;
    });
    if (timing) timing.sumMs += performance.now() - t2;
    return out;
  };
}

/**
 * Where a worker's time went in one job (milliseconds): `readMs` waiting for its partial sums
 * (`dataSync`, which includes finishing the queued kernels), `waitMs` at the barriers, `sumMs`
 * adding the slots and uploading the sums, `totalMs` the whole job.
 */
export interface ReduceTiming {
  /** All-reduce calls the worker made in the job. */
  calls: number;
  /** Time spent reading back its partial sums (`dataSync`), ms. */
  readMs: number;
  /** Time spent waiting at the barriers for the other workers, ms. */
  waitMs: number;
  /** Time spent adding the slots and uploading the sums, ms. */
  sumMs: number;
  /** Wall-clock time of the whole job, ms. */
  totalMs: number;
}

/** Runs one job's slice on this thread (the body of `metagradient_worker.ts`). */
export function runWorkerJob(job: WorkerJob): WorkerReply {
  const start = performance.now();
  const timing: ReduceTiming = { calls: 0, readMs: 0, waitMs: 0, sumMs: 0, totalMs: 0 };
  const values = arrayMetaGradient(
    {
      initial: job.initial,
      states: job.states,
      actions: job.actions,
      outer: { states: job.outerStates, targets: job.outerTargets, weights: job.outerWeights },
      options: job.options,
    },
    {
      synsetRows: job.synsetRows,
      outerRows: job.outerRows,
      allReduce: sharedAllReduce(job.exchange, job.slot, job.control, job.index, job.parts, timing),
    },
  );
  return { ok: true, ...values, timing: { ...timing, totalMs: performance.now() - start } };
}

/** The meta-gradient of a problem given as arrays, on the calling thread. */
export function metaGradientValues(problem: MetaGradientProblem): MetaGradientValues {
  return arrayMetaGradient(problem);
}

/**
 * Puts a problem's arrays on the backend, runs the meta-gradient (of one slice when `slicing` is
 * given, else of the whole problem) and reads the results back, freeing every tensor.
 */
function arrayMetaGradient(problem: MetaGradientProblem, slicing?: Slicing): MetaGradientValues {
  const { initial, options } = problem;
  const d = initial.sizes[0], m = initial.sizes[initial.sizes.length - 1];
  const n = problem.states.length / d, b = problem.outer.states.length / d;
  const params = mlpTensors(initial);
  try {
    const g = tidyPlain(() => {
      const x = tf.tensor2d(problem.states, [n, d]);
      const y = tf.tensor2d(problem.actions, [n, m]);
      const batch = {
        states: tf.tensor2d(problem.outer.states, [b, d]),
        targets: tf.tensor2d(problem.outer.targets, [b, m]),
        weights: problem.outer.weights ? tf.tensor1d(problem.outer.weights) : undefined,
      };
      return slicing
        ? metaGradientSlice(params, x, y, batch, options, slicing)
        : metaGradient(params, x, y, batch, options);
    });
    const values: MetaGradientValues = {
      states: g.states.dataSync() as Float32Array,
      actions: g.actions.dataSync() as Float32Array,
      outerLoss: g.outerLoss.dataSync()[0],
      innerLoss: g.innerLoss.dataSync()[0],
    };
    tf.dispose([g.states, g.actions, g.outerLoss, g.innerLoss]);
    return values;
  } finally {
    tf.dispose(params.flatMap((layer) => [layer.w, layer.b]));
  }
}

interface PoolWorker {
  readonly worker: Worker;
  /** Settles the request in flight, if any. */
  pending?: { resolve: (reply: WorkerReply) => void; reject: (e: Error) => void; control?: Int32Array };
}

/**
 * Meta-gradients on `threads` worker threads, data-parallel over the synthetic set: worker k owns
 * a contiguous slice of X, Y and of the outer batch, runs `metaGradientSlice` on its own tensor
 * backend, and sums the shared partial sums with the others through shared memory after every
 * inner step and every reverse step. The result equals `metaGradient`'s up to float32 summation
 * order. Create once (workers start their backends, ~1 s), use for many outer steps, `dispose`.
 * With `threads` = 1 it runs `metaGradient` on the calling thread and starts no worker.
 */
export class MetaGradientPool {
  readonly #workers: PoolWorker[];
  #busy = false;
  #timing: ReduceTiming[] = [];

  private constructor(readonly threads: number, workers: PoolWorker[]) {
    this.#workers = workers;
  }

  /**
   * Starts `threads` workers on the backend `backend` (default: the calling thread's,
   * `tf.getBackend()`); resolves once every worker's backend is ready. The native `tensorflow`
   * backend already computes on every core and is not started in workers: there the pool has one
   * thread, the caller's.
   */
  static async create(threads: number, backend: string = tf.getBackend()): Promise<MetaGradientPool> {
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`threads = ${threads} must be a positive integer`);
    }
    if (threads === 1 || backend === "tensorflow") return new MetaGradientPool(1, []);
    const workers: PoolWorker[] = Array.from({ length: threads }, () => {
      const entry: PoolWorker = {
        worker: new Worker(new URL("./metagradient_worker.ts", import.meta.url).href, { type: "module" }),
      };
      entry.worker.onmessage = (e: MessageEvent<WorkerReply>) => {
        const p = entry.pending;
        entry.pending = undefined;
        p?.resolve(e.data);
      };
      entry.worker.onerror = (e) => {
        e.preventDefault();
        const p = entry.pending;
        entry.pending = undefined;
        if (p?.control) abortJob(p.control);
        p?.reject(new Error(`meta-gradient worker failed: ${e.message}`));
      };
      return entry;
    });
    const pool = new MetaGradientPool(threads, workers);
    try {
      // Workers compute with the caller's BLAS (the same library, or none), whatever their env says.
      const blas = backend === "wasm" ? activeBlas()?.path ?? "off" : undefined;
      const replies = await Promise.all(
        workers.map((w) => pool.#request(w, { kind: "init", backend, blas })),
      );
      const failed = replies.find((r) => !r.ok);
      if (failed && !failed.ok) throw new Error(`meta-gradient worker failed to start: ${failed.error}`);
    } catch (e) {
      pool.dispose();
      throw e;
    }
    return pool;
  }

  #request(w: PoolWorker, message: unknown, control?: Int32Array): Promise<WorkerReply> {
    return new Promise((resolve, reject) => {
      w.pending = { resolve, reject, control };
      w.worker.postMessage(message);
    });
  }

  /** The meta-gradient of `problem` (one call at a time). */
  async compute(problem: MetaGradientProblem): Promise<MetaGradientValues> {
    const { initial } = problem;
    const d = initial.sizes[0], m = initial.sizes[initial.sizes.length - 1];
    const n = problem.states.length / d, b = problem.outer.states.length / d;
    const parts = Math.min(this.threads, n, b);
    if (parts <= 1) return metaGradientValues(problem);
    if (this.#workers.length === 0) throw new Error("the meta-gradient pool was disposed");
    if (this.#busy) throw new Error("MetaGradientPool.compute is already running");
    this.#busy = true;
    try {
      // Largest all-reduce: every parameter plus one loss value.
      const slot = initial.weights.reduce((s, w) => s + w.length, 0) + initial.biases.reduce((s, v) =>
        s + v.length, 0) +
        1;
      const exchange = new Float32Array(new SharedArrayBuffer(2 * parts * slot * 4));
      const control = new Int32Array(new SharedArrayBuffer(3 * 4));
      const replies = await Promise.all(Array.from({ length: parts }, (_, k) => {
        const [r0, r1] = sliceBounds(n, parts, k), [o0, o1] = sliceBounds(b, parts, k);
        const job: WorkerJob = {
          kind: "job",
          index: k,
          parts,
          initial,
          // slice(), not subarray(): a posted view would copy its whole buffer.
          states: problem.states.slice(r0 * d, r1 * d),
          actions: problem.actions.slice(r0 * m, r1 * m),
          outerStates: problem.outer.states.slice(o0 * d, o1 * d),
          outerTargets: problem.outer.targets.slice(o0 * m, o1 * m),
          outerWeights: problem.outer.weights?.slice(o0, o1),
          synsetRows: n,
          outerRows: b,
          options: problem.options,
          exchange,
          slot,
          control,
        };
        return this.#request(this.#workers[k], job, control);
      }));
      const failed = replies.find((r) => !r.ok);
      if (failed && !failed.ok) throw new Error(`meta-gradient worker failed: ${failed.error}`);
      this.#timing = replies.flatMap((r) => r.ok && r.timing ? [r.timing] : []);
      const states = new Float32Array(n * d), actions = new Float32Array(n * m);
      let outerLoss = 0, innerLoss = 0;
      replies.forEach((r, k) => {
        if (!r.ok) return;
        const [r0] = sliceBounds(n, parts, k);
        states.set(r.states, r0 * d);
        actions.set(r.actions, r0 * m);
        if (k === 0) [outerLoss, innerLoss] = [r.outerLoss, r.innerLoss];
      });
      return { states, actions, outerLoss, innerLoss };
    } finally {
      this.#busy = false;
    }
  }

  /** Each worker's timing in the last `compute` that used workers (empty otherwise). */
  get lastTiming(): readonly ReduceTiming[] {
    return this.#timing;
  }

  /** Stops the workers. */
  dispose(): void {
    for (const w of this.#workers) {
      w.pending?.reject(new Error("the meta-gradient pool was disposed"));
      w.worker.terminate();
    }
    this.#workers.length = 0;
  }
}
