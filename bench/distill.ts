/**
 * Seconds per outer distillation step (one exact meta-gradient through T inner steps plus the outer
 * objective on B real states), ours on the current backend against the PyTorch peer in the authors'
 * structure (bench/peers/distill_peer.py) on the same machine, and their ratio. One JSON line.
 *
 * Usage: deno task bench distill [--inner-steps T] [--synset N] [--width W] [--depth D] [--repeats R] [--threads K]
 *                                [--backend B] [--no-peer] [--json]
 * Defaults are the paper configuration: T = 100, N = 256, W = 256, D = 3, Hopper dims, B = 10 × 256.
 * `--threads K` (default 1, or `OBD_THREADS`) runs the meta-gradient data-parallel on K worker
 * threads (`MetaGradientPool`); `threads` in the output is K, `backend_threads` the threads of one
 * backend instance, and `worker_ms` where the workers' time went in the last repeat.
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { parseArgs } from "node:util";
import process from "node:process";
import { initBackend, requestedBackend } from "../numerics/backend.ts";
import { metaGradient, type StudentParams } from "../stages/distill/metagradient.ts";
import { MetaGradientPool, requestedMetaGradientThreads } from "../stages/distill/metagradient_pool.ts";
import { initMlpWeights, mlpTensors } from "../numerics/mlp.ts";
import { Rng } from "../numerics/random.ts";

const { values } = parseArgs({
  args: Deno.args.slice(1),
  options: {
    "inner-steps": { type: "string", default: "100" },
    synset: { type: "string", default: "256" },
    width: { type: "string", default: "256" },
    depth: { type: "string", default: "3" },
    repeats: { type: "string", default: "3" },
    threads: { type: "string" },
    backend: { type: "string" },
    "no-peer": { type: "boolean", default: false },
    json: { type: "boolean", default: true },
  },
});
const T = Number(values["inner-steps"]),
  N = Number(values.synset),
  W = Number(values.width),
  D = Number(values.depth);
const repeats = Number(values.repeats);
const threads = values.threads === undefined ? requestedMetaGradientThreads() : Number(values.threads);
if (!Number.isInteger(threads) || threads < 1) {
  throw new Error(`--threads ${values.threads} must be a positive integer`);
}
const [obsDim, actDim, batch] = [11, 3, 2560];
const backendName = requestedBackend(values.backend, Deno.env.get("OBD_BACKEND"));
if (typeof backendName !== "string") throw new Error(backendName.message);
const backend = await initBackend(backendName);
if ("kind" in backend) throw new Error(backend.message);

const rng = new Rng(0);
const sizes = [obsDim, ...Array(D).fill(W), actDim];
const init = initMlpWeights(sizes, rng);
const params: StudentParams = mlpTensors(init);
const x = tf.tensor2d(rng.fillNormal(new Float32Array(N * obsDim)), [N, obsDim]);
const y = tf.tensor2d(rng.fillUniform(new Float32Array(N * actDim), -1, 1), [N, actDim]);
const outer = {
  states: tf.tensor2d(rng.fillNormal(new Float32Array(batch * obsDim)), [batch, obsDim]),
  targets: tf.tensor2d(rng.fillUniform(new Float32Array(batch * actDim), -1, 1), [batch, actDim]),
};
const options = { steps: T, learningRate: 0.1, maxAction: 1 };
const pool = threads > 1 ? await MetaGradientPool.create(threads) : undefined;
const problem = {
  initial: init,
  states: x.dataSync() as Float32Array,
  actions: y.dataSync() as Float32Array,
  outer: {
    states: outer.states.dataSync() as Float32Array,
    targets: outer.targets.dataSync() as Float32Array,
  },
  options,
};

async function step(): Promise<number> {
  const start = performance.now();
  if (pool) {
    await pool.compute(problem); // the arrays an outer update reads
  } else {
    const g = metaGradient(params, x, y, outer, options);
    g.states.dataSync(); // wait for the work, as an outer update would
    tf.dispose([g.states, g.actions, g.outerLoss, g.innerLoss]);
  }
  return (performance.now() - start) / 1000;
}

await step(); // warm-up: kernel compilation and allocation
const times: number[] = [];
// CPU seconds of the whole process (all threads) per step: on a shared machine, wall time against
// CPU time tells contention from parallel overhead.
const cpuStart = process.cpuUsage();
for (let r = 0; r < repeats; r++) times.push(await step());
const cpu = process.cpuUsage(cpuStart);
const cpuPerStep = (cpu.user + cpu.system) / 1e6 / repeats;
const ours = Math.min(...times);
const workerMs = pool?.lastTiming.map((t) => ({
  total: Math.round(t.totalMs),
  barrier_wait: Math.round(t.waitMs),
  read_partials: Math.round(t.readMs),
  sum_upload: Math.round(t.sumMs),
  all_reduces: t.calls,
}));
let peerSeconds: number | undefined;
let peerCpuSeconds: number | undefined;
let peerNote: string | undefined;
if (!values["no-peer"]) {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: [
      "bench/peers/distill_peer.py",
      "bench",
      String(N),
      String(T),
      String(W),
      String(D),
      String(obsDim),
      String(actDim),
      String(batch),
      String(repeats),
      String(navigator.hardwareConcurrency),
    ],
    stdout: "piped",
    stderr: "piped",
  }).output().catch((e) => ({
    success: false,
    stdout: new Uint8Array(),
    stderr: new TextEncoder().encode(String(e)),
  }));
  if (out.success) {
    const peer = JSON.parse(new TextDecoder().decode(out.stdout));
    peerSeconds = peer.s_per_outer_step;
    peerCpuSeconds = peer.cpu_s_per_outer_step;
  } else peerNote = `peer unavailable: ${new TextDecoder().decode(out.stderr).trim().split("\n").pop()}`;
}
console.log(JSON.stringify({
  bench: "distill",
  backend: backend.label,
  threads,
  backend_threads: backend.threads,
  inner_steps: T,
  synset: N,
  width: W,
  depth: D,
  outer_batch: batch,
  s_per_outer_step: +ours.toFixed(3),
  times: times.map((t) => +t.toFixed(3)),
  cpu_s_per_outer_step: +cpuPerStep.toFixed(3),
  peer_s_per_outer_step: peerSeconds === undefined ? null : +peerSeconds.toFixed(3),
  ratio: peerSeconds === undefined ? null : +(ours / peerSeconds).toFixed(3),
  // CPU seconds per step, ours (all threads, min over repeats is not kept: the mean) and the peer's
  // (its 2 threads summed): on a loaded machine these compare the work where wall times do not.
  peer_cpu_s_per_outer_step: peerCpuSeconds === undefined ? null : +peerCpuSeconds.toFixed(3),
  // Resident memory now (the workers' included, they are still running): a lower bound on the peak.
  peak_rss_mb: Math.round(Deno.memoryUsage().rss / 2 ** 20),
  tensors_alive: tf.memory().numTensors,
  ...(workerMs ? { worker_ms: workerMs } : {}),
  ...(peerNote ? { note: peerNote } : {}),
}));
pool?.dispose();
