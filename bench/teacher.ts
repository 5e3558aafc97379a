/**
 * Teacher benchmarks on the current backend (`OBD_BACKEND`, default wasm), as JSON lines.
 *
 * Speed (default): gradient steps per second of TD3+BC and Cal-QL with their default networks and
 * batch 256 on the embedded Hopper dataset, after warm-up steps; TD3+BC also against the PyTorch
 * peer in CORL's structure (bench/peers/td3bc_peer.py) on as many threads as ours, in the same run:
 *   {"bench":"teacher","algorithm":"td3bc","backend":"wasm+openblas-0.3.21","engine":"host",…,
 *    "stepsPerSecond":x,"peerStepsPerSecond":y,"ratio":x/y}
 *
 * Quality (`--quality`, issue #4's bar): the dataset's mean episode; BC on the whole dataset as the
 * pipeline's baseline trains it, at each budget of `--bc-steps` (default 1000,3000,10000;
 * `--bc-policies` 5, `--bc-lr` 3e-4); then the TD3+BC teacher for `--steps` (default 100000),
 * evaluated every `--eval-every` (10000) steps; all over 10 episodes, as normalized returns. The
 * last line compares the mean of the teacher's last three evaluations with the best BC budget:
 *   {"bench":"teacher-quality","policy":"bc","steps":N,"normalizedScore":x,…}
 *   {"bench":"teacher-quality","policy":"td3bc","step":N,"normalizedScore":x}
 *   {"bench":"teacher-quality","summary":true,"teacherLastThree":x,"bestBc":y,"teacherOverBestBc":r,…}
 *
 * Usage: deno task bench teacher [--td3bc-steps N] [--calql-steps N] [--no-peer]
 *        deno task bench teacher --quality [--steps N] [--eval-every N] [--bc-steps N,…] [--bc-policies K] [--bc-lr x] [--seed S]
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { evaluatePolicy } from "../envs/rollout.ts";
import { BACKEND_ENV, initBackend, requestedBackend } from "../numerics/backend.ts";
import { consoleProgress } from "../core/progress.ts";
import { intArg, intListArg, positiveArg } from "./args.ts";
import { type StageContext, standaloneContext } from "../core/stage.ts";
import { tidyPlain } from "../numerics/mlp.ts";
import { deriveSeed, Rng } from "../numerics/random.ts";
import {
  datasetMeanScore,
  EMBEDDED_DATASET,
  loadStage,
  normalizeStates,
  type OfflineDataset,
} from "../stages/load.ts";
import { defaultTeacherConfig, teacherStage } from "../stages/teacher.ts";
import { Calql, CALQL_DEFAULTS, calqlNoise, initCalqlWeights } from "../stages/teacher/calql.ts";
import { PAPER_EVALUATE } from "../stages/evaluate.ts";
import { meanStd } from "../numerics/statistics.ts";
import { disposeStudent, ensemblePolicy, PAPER_STUDENT, studentProtocol } from "../stages/student.ts";
import { fitStudent } from "../stages/student_fit.ts";
import { gatherBatch, replayTensors, returnsToGo, sampleIndices } from "../stages/teacher/data.ts";
import { initTd3bcWeights, targetNoise, Td3bc, TD3BC_DEFAULTS } from "../stages/teacher/td3bc.ts";

const backendName = requestedBackend(undefined, Deno.env.get(BACKEND_ENV));
if (typeof backendName !== "string") throw new Error(backendName.message);
const started = await initBackend(backendName);
if ("kind" in started) throw new Error(started.message);
const backend = started;

/** A stage context that keeps everything in memory (the bench may only write under data/bench). */
function benchContext(): StageContext {
  return standaloneContext({ backend: backend.label });
}

/** The embedded dataset through the load stage's own code, without the cache. */
async function embedded(): Promise<OfflineDataset> {
  const result = await loadStage.run({}, {
    file: EMBEDDED_DATASET.file,
    sha256: "-",
    env: EMBEDDED_DATASET.env,
    minTransitions: 5000,
  }, benchContext())();
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

/**
 * The PyTorch TD3+BC peer on the same thread count as ours (one: tfjs-wasm and the BLAS both run
 * single-threaded), under the same environment (OPENBLAS_CORETYPE included); or why it did not run.
 */
function td3bcPeer(steps: number, obsDim: number, actDim: number, n: number, batch: number) {
  try {
    const out = new Deno.Command("/usr/bin/python3", {
      args: [
        "bench/peers/td3bc_peer.py",
        String(steps),
        "20",
        "1",
        String(obsDim),
        String(actDim),
        String(n),
        String(batch),
      ],
      stdout: "piped",
      stderr: "piped",
    }).outputSync();
    if (!out.success) {
      return `peer unavailable: ${new TextDecoder().decode(out.stderr).trim().split("\n").pop()}`;
    }
    return JSON.parse(new TextDecoder().decode(out.stdout)) as {
      steps_per_second: number;
      threads: number;
      torch: string;
    };
  } catch (e) {
    return `peer unavailable: ${(e as Error).message}`;
  }
}

function benchSpeed(): void {
  const td3Steps = intArg("--td3bc-steps", 200);
  if (td3Steps > 0) {
    const hyper = TD3BC_DEFAULTS;
    const replay = replayTensors(data);
    const learner = new Td3bc(initTd3bcWeights(data.obsDim, data.actDim, hyper, new Rng(0)), hyper, 1);
    const seconds = time(
      (t) => {
        const rng = new Rng(deriveSeed(0, t));
        const idx = sampleIndices(rng, data.n, hyper.batchSize);
        const noise = targetNoise(rng, hyper.batchSize, data.actDim, hyper, 1);
        tidyPlain(() => learner.update(gatherBatch(replay, idx), noise, (t + 1) % 100 === 0)); // a sync now and then, as in training
      },
      20,
      td3Steps,
    );
    const engine = learner.engine;
    learner.dispose();
    const peer = Deno.args.includes("--no-peer")
      ? undefined
      : td3bcPeer(td3Steps, data.obsDim, data.actDim, data.n, hyper.batchSize);
    const ours = td3Steps / seconds;
    report({
      bench: "teacher",
      algorithm: "td3bc",
      engine,
      batchSize: hyper.batchSize,
      steps: td3Steps,
      seconds: +seconds.toFixed(3),
      stepsPerSecond: +ours.toFixed(2),
      ...(peer === undefined ? {} : typeof peer === "string" ? { peerNote: peer } : {
        peerStepsPerSecond: +peer.steps_per_second.toFixed(2),
        peerThreads: peer.threads,
        peerTorch: peer.torch,
        ratio: +(ours / peer.steps_per_second).toFixed(3),
      }),
    });
  }
  const calqlSteps = intArg("--calql-steps", 10);
  if (calqlSteps > 0) {
    const hyper = CALQL_DEFAULTS;
    const replay = replayTensors(data, returnsToGo(data, hyper.discount));
    const learner = new Calql(initCalqlWeights(data.obsDim, data.actDim, hyper, new Rng(0)), hyper, 1);
    const seconds = time(
      (t) => {
        const rng = new Rng(deriveSeed(0, t));
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

/**
 * BC on the whole dataset, exactly as the pipeline's `bc` baseline trains it (`fitStudent`: the
 * paper's 3×256 student, Adam, minibatches of 256, normalized states): `policies` independent
 * policies, each evaluated over 10 episodes.
 */
async function wholeDataBc(steps: number, learningRate: number, policies: number, seed: number) {
  const rng = new Rng(seed + 1000);
  const pairs = {
    n: data.n,
    obsDim: data.obsDim,
    actDim: data.actDim,
    states: normalizeStates(data.observations, data),
    actions: data.actions,
  };
  const started = performance.now();
  const scores: number[] = [];
  for (let p = 0; p < policies; p++) {
    const student = fitStudent(pairs, {
      architecture: { kind: "mlp", hidden: studentProtocol(PAPER_STUDENT, data.env).hidden },
      optimizer: { kind: "adam", learningRate },
      steps,
      maxAction: studentProtocol(PAPER_STUDENT, data.env).maxAction,
      batchSize: PAPER_EVALUATE.bcBatchSize,
    }, rng.fork());
    try {
      const evaluation = await evaluatePolicy(
        data.env,
        ensemblePolicy([student], data),
        10,
        rng.nextUint32(),
      );
      scores.push(evaluation.meanNormalizedScore);
    } finally {
      disposeStudent(student);
    }
  }
  return { seconds: (performance.now() - started) / 1000, scores };
}

/**
 * The teacher against its two bars (issue #4): the dataset's average episode and BC on the whole
 * data at several budgets (its score moves with the budget, so the best budget is the fair bar). The
 * teacher is evaluated every `--eval-every` steps, because one evaluation of a Hopper policy is
 * noisy; the summary line compares the mean of its last three evaluations with the best BC.
 */
async function benchQuality(): Promise<void> {
  const steps = intArg("--steps", 100_000);
  const evalEvery = intArg("--eval-every", 10_000);
  const bcBudgets = intListArg("--bc-steps", [1_000, 3_000, 10_000]);
  const bcPolicies = intArg("--bc-policies", 5);
  const bcLr = positiveArg("--bc-lr", PAPER_EVALUATE.bcLr);
  const seed = intArg("--seed", 0);
  const datasetScore = datasetMeanScore(data);
  report({
    bench: "teacher-quality",
    policy: "dataset",
    episodes: data.episodeReturns.length,
    normalizedScore: +datasetScore.toFixed(2),
  });
  const bcMeans: number[] = [];
  for (const bcSteps of bcBudgets) {
    const bc = await wholeDataBc(bcSteps, bcLr, bcPolicies, seed);
    const { mean, std } = meanStd(bc.scores);
    bcMeans.push(mean);
    report({
      bench: "teacher-quality",
      policy: "bc",
      steps: bcSteps,
      learningRate: bcLr,
      policies: bcPolicies,
      seconds: +bc.seconds.toFixed(1),
      normalizedScore: +mean.toFixed(2),
      std: +std.toFixed(2),
      perPolicy: bc.scores.map((x) => +x.toFixed(1)),
    });
  }
  const evaluations: { step: number; normalizedScore: number }[] = [];
  const ctx: StageContext = {
    ...benchContext(),
    progress: consoleProgress(),
    log: (record) => {
      if (record.event !== "eval") return;
      const point = { step: record.step as number, normalizedScore: record.normalizedScore as number };
      evaluations.push(point);
      report({
        bench: "teacher-quality",
        policy: "td3bc",
        ...point,
        normalizedScore: +point.normalizedScore.toFixed(2),
      });
    },
  };
  const config = { ...defaultTeacherConfig("td3bc"), steps, seed, evalEvery };
  const result = await teacherStage.run({ dataset: data }, config, ctx)();
  if (result._tag === "Left") throw new Error(result.left.message);
  const lastThree = evaluations.slice(-3).map((e) => e.normalizedScore);
  const teacher = meanStd(lastThree).mean;
  const bestBc = Math.max(...bcMeans);
  report({
    bench: "teacher-quality",
    summary: true,
    steps,
    seconds: +result.right.training.seconds.toFixed(1),
    stepsPerSecond: +(steps / result.right.training.seconds).toFixed(2),
    teacherLastThree: +teacher.toFixed(2),
    bestBc: +bestBc.toFixed(2),
    dataset: +datasetScore.toFixed(2),
    teacherOverBestBc: +(teacher / bestBc).toFixed(2),
    teacherOverDataset: +(teacher / datasetScore).toFixed(2),
  });
}

if (Deno.args.includes("--quality")) await benchQuality();
else benchSpeed();
