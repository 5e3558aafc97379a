/**
 * Teacher benchmarks on the current backend (`OBD_BACKEND`, default wasm), as JSON lines.
 *
 * Speed (default): gradient steps per second of TD3+BC and Cal-QL with their default networks and
 * batch 256 on the embedded Hopper dataset, after warm-up steps:
 *   {"bench":"teacher","algorithm":"td3bc","backend":"wasm","threads":2,"steps":N,"seconds":s,"stepsPerSecond":x}
 *
 * Quality (`--quality`): trains the TD3+BC teacher (`--steps`, default 10000) and, as the baseline,
 * BC on the whole dataset (`--bc-steps`, default 10000: MLP 3×256 ReLU, tanh output, Adam 3e-4,
 * batch 256, normalized states), evaluates both over 10 episodes, and prints their normalized
 * returns beside the dataset's mean episode:
 *   {"bench":"teacher-quality","policy":"td3bc","steps":N,"seconds":s,"normalizedScore":x,…}
 *
 * Usage: deno task bench teacher [--td3bc-steps N] [--calql-steps N] [--quality [--steps N] [--bc-steps N] [--seed S]]
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { normalizedScore } from "../envs/locomotion.ts";
import { evaluatePolicy } from "../envs/rollout.ts";
import { BACKEND_ENV, initBackend, requestedBackend } from "../pipeline/backend.ts";
import { silentProgress } from "../pipeline/progress.ts";
import type { StageContext } from "../pipeline/stage.ts";
import {
  Adam,
  disposeMlp,
  initMlpWeights,
  mlpForward,
  mlpTensorList,
  mlpVariables,
  tidyPlain,
} from "../numerics/mlp.ts";
import { Rng, stepRng } from "../numerics/random.ts";
import { EMBEDDED_DATASET, loadStage, type OfflineDataset } from "../stages/load.ts";
import { defaultTeacherConfig, teacherStage } from "../stages/teacher.ts";
import { Calql, CALQL_DEFAULTS, calqlNoise, initCalqlWeights } from "../stages/teacher/calql.ts";
import {
  gatherBatch,
  normalizeStates,
  replayTensors,
  returnsToGo,
  sampleIndices,
} from "../stages/teacher/data.ts";
import { initTd3bcWeights, targetNoise, Td3bc, TD3BC_DEFAULTS } from "../stages/teacher/td3bc.ts";

function intArg(flag: string, fallback: number): number {
  const i = Deno.args.indexOf(flag);
  const v = i >= 0 ? Number(Deno.args[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 0) throw new Error(`${flag} needs a non-negative integer`);
  return v;
}

const backendName = requestedBackend(undefined, Deno.env.get(BACKEND_ENV));
if (typeof backendName !== "string") throw new Error(backendName.message);
const started = await initBackend(backendName);
if ("kind" in started) throw new Error(started.message);
const backend = started;

/** A stage context that keeps everything in memory (the bench may only write under data/bench). */
function benchContext(workDir: string): StageContext {
  return { progress: silentProgress, log: () => {}, metric: () => {}, backend: backend.label, workDir };
}

/** The embedded dataset through the load stage's own code, without the cache. */
async function embedded(): Promise<OfflineDataset> {
  const result = await loadStage.run({}, {
    file: EMBEDDED_DATASET.file,
    sha256: "-",
    env: EMBEDDED_DATASET.env,
    minTransitions: 5000,
  }, benchContext("data/bench"))();
  if (result._tag === "Left") throw new Error(result.left.message);
  return result.right;
}

const data = await embedded();

// tfjs's wasm backend runs single-threaded when it finds no worker-thread support, whatever
// setThreadsCount asked for: report what it actually uses.
const multithread = backend.name === "wasm"
  ? Boolean(await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT"))
  : undefined;

function report(record: Record<string, unknown>): void {
  console.log(
    JSON.stringify({
      backend: backend.label,
      threads: backend.threads,
      wasmMultithread: multithread,
      ...record,
    }),
  );
}

/** Times `steps` calls of `step` after `warmup` calls. */
function time(step: (t: number) => void, warmup: number, steps: number): number {
  for (let t = 0; t < warmup; t++) step(t);
  const t0 = performance.now();
  for (let t = warmup; t < warmup + steps; t++) step(t);
  return (performance.now() - t0) / 1000;
}

function benchSpeed(): void {
  const td3Steps = intArg("--td3bc-steps", 200);
  if (td3Steps > 0) {
    const hyper = TD3BC_DEFAULTS;
    const replay = replayTensors(data);
    const learner = new Td3bc(initTd3bcWeights(data.obsDim, data.actDim, hyper, new Rng(0)), hyper, 1);
    const seconds = time(
      (t) => {
        const rng = stepRng(0, t);
        const idx = sampleIndices(rng, data.n, hyper.batchSize);
        const noise = targetNoise(rng, hyper.batchSize, data.actDim, hyper, 1);
        tidyPlain(() => learner.update(gatherBatch(replay, idx), noise, (t + 1) % 100 === 0)); // a sync now and then, as in training
      },
      20,
      td3Steps,
    );
    learner.dispose();
    report({
      bench: "teacher",
      algorithm: "td3bc",
      batchSize: hyper.batchSize,
      steps: td3Steps,
      seconds: +seconds.toFixed(3),
      stepsPerSecond: +(td3Steps / seconds).toFixed(2),
    });
  }
  const calqlSteps = intArg("--calql-steps", 10);
  if (calqlSteps > 0) {
    const hyper = CALQL_DEFAULTS;
    const replay = replayTensors(data, returnsToGo(data, hyper.discount));
    const learner = new Calql(initCalqlWeights(data.obsDim, data.actDim, hyper, new Rng(0)), hyper, 1);
    const seconds = time(
      (t) => {
        const rng = stepRng(0, t);
        const idx = sampleIndices(rng, data.n, hyper.batchSize);
        const noise = calqlNoise(rng, hyper.batchSize, data.actDim, hyper.cqlNActions);
        tidyPlain(() => learner.update(gatherBatch(replay, idx), noise, true));
      },
      2,
      calqlSteps,
    );
    learner.dispose();
    report({
      bench: "teacher",
      algorithm: "calql",
      batchSize: hyper.batchSize,
      cqlNActions: hyper.cqlNActions,
      steps: calqlSteps,
      seconds: +seconds.toFixed(3),
      stepsPerSecond: +(calqlSteps / seconds).toFixed(3),
    });
  }
}

/** BC on the whole dataset: min mean ‖π(s) − a‖², π = m·tanh(MLP 3×256), Adam, normalized states. */
async function behaviourCloning(steps: number, seed: number) {
  const rng = new Rng(seed);
  const net = mlpVariables(initMlpWeights([data.obsDim, 256, 256, 256, data.actDim], rng));
  const vars = mlpTensorList(net);
  const adam = new Adam(vars, { learningRate: 3e-4 });
  const states = tf.tensor2d(normalizeStates(data.observations, data.stateMean, data.stateStd), [
    data.n,
    data.obsDim,
  ]);
  const actions = tf.tensor2d(data.actions, [data.n, data.actDim]);
  const started = performance.now();
  for (let t = 0; t < steps; t++) {
    const idx = sampleIndices(stepRng(seed + 1000, t), data.n, 256);
    tf.tidy(() => {
      const i = tf.tensor1d(idx, "int32");
      const s = tf.gather(states, i), a = tf.gather(actions, i);
      const { grads } = tf.variableGrads(
        () => tf.mean(tf.squaredDifference(mlpForward(net, s, "relu", "tanh"), a)),
        vars,
      );
      adam.apply(vars.map((v) => grads[v.name]));
    });
  }
  const seconds = (performance.now() - started) / 1000;
  const mean = tf.tensor2d(data.stateMean, [1, data.obsDim]),
    std = tf.tensor2d(data.stateStd, [1, data.obsDim]);
  const evaluation = await evaluatePolicy(
    data.env,
    (obs, n) =>
      tf.tidy(() =>
        mlpForward(
          net,
          tf.div(tf.sub(tf.tensor2d(obs, [n, data.obsDim]), mean), std) as tf.Tensor2D,
          "relu",
          "tanh",
        ).dataSync() as Float32Array
      ).slice(),
    10,
    seed,
  );
  tf.dispose([states, actions, mean, std]);
  adam.dispose();
  disposeMlp(net);
  return { seconds, evaluation };
}

async function benchQuality(): Promise<void> {
  const steps = intArg("--steps", 10_000);
  const bcSteps = intArg("--bc-steps", 10_000);
  const seed = intArg("--seed", 0);
  const returns = Array.from(data.episodeReturns);
  report({
    bench: "teacher-quality",
    policy: "dataset",
    episodes: returns.length,
    normalizedScore: +normalizedScore(data.env, returns.reduce((a, b) => a + b, 0) / returns.length).toFixed(
      2,
    ),
  });
  const bc = await behaviourCloning(bcSteps, seed);
  report({
    bench: "teacher-quality",
    policy: "bc",
    steps: bcSteps,
    seconds: +bc.seconds.toFixed(1),
    normalizedScore: +bc.evaluation.meanNormalizedScore.toFixed(2),
    normalizedScores: Array.from(bc.evaluation.normalizedScores, (x) => +x.toFixed(1)),
  });
  const workDir = `data/bench/teacher-work-${crypto.randomUUID().slice(0, 8)}`;
  const config = { ...defaultTeacherConfig("td3bc"), steps, seed };
  const result = await teacherStage.run({ dataset: data }, config, benchContext(workDir))();
  await Deno.remove(workDir, { recursive: true }).catch(() => {});
  if (result._tag === "Left") throw new Error(result.left.message);
  const t = result.right;
  report({
    bench: "teacher-quality",
    policy: "td3bc",
    steps,
    seconds: +t.training.seconds.toFixed(1),
    stepsPerSecond: +(steps / t.training.seconds).toFixed(2),
    normalizedScore: +t.evaluation!.meanNormalizedScore.toFixed(2),
    normalizedScores: Array.from(t.evaluation!.normalizedScores, (x) => +x.toFixed(1)),
  });
}

if (Deno.args.includes("--quality")) await benchQuality();
else benchSpeed();
