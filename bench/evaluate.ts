/**
 * Rollout throughput of the evaluate stage: environment steps per second of batched evaluation
 * (`evaluatePolicy`: all episodes step together, the policy runs once per step on the whole batch),
 * policy inference included, for
 *   - `student`: one paper-protocol student (3×256 ReLU, 100 SGD steps on 256 random real pairs),
 *   - `ensemble`: 10 such students, actions averaged (the paper's ensemble),
 *   - `constant`: a zero action and no inference, the environment's own share.
 * On the embedded Hopper dataset. One JSON line per policy:
 *   {"bench":"evaluate","policy":"student","env":"hopper","episodes":10,"env_steps":N,"seconds":s,
 *    "steps_per_second":x,"inference_fraction":f,"mean_episode_length":l,"normalized_score":v,…}
 * `inference_fraction` is the share of rollout time spent inside the policy (normalize, forward,
 * download). Student training time is reported separately (`train_seconds_per_student`).
 *
 * Usage: deno task bench evaluate [--episodes N] [--repeats R]   (defaults 10 and 3; best of R)
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { type BatchPolicy, evaluatePolicy } from "../envs/rollout.ts";
import { BACKEND_ENV, initBackend, requestedBackend } from "../numerics/backend.ts";
import { standaloneContext } from "../core/stage.ts";
import { disposeMlp } from "../numerics/mlp.ts";
import { Rng } from "../numerics/random.ts";
import {
  ensemblePolicy,
  mlpStudent,
  PAPER_STUDENT,
  type Student,
  studentProtocol,
  trainStudent,
} from "../stages/student.ts";
import { randomRealSet } from "../stages/synset.ts";
import { EMBEDDED_DATASET, loadStage } from "../stages/load.ts";
import { intArg } from "./args.ts";

const EPISODES = intArg("--episodes", 10, 1);
const REPEATS = intArg("--repeats", 3, 1);

const backendName = requestedBackend(undefined, Deno.env.get(BACKEND_ENV));
if (typeof backendName !== "string") throw new Error(backendName.message);
const started = await initBackend(backendName);
if ("kind" in started) throw new Error(started.message);
const backend = started; // narrowed once, for the functions below

const loaded = await loadStage.run({}, {
  file: EMBEDDED_DATASET.file,
  sha256: "-",
  env: EMBEDDED_DATASET.env,
  minTransitions: 5000,
}, standaloneContext({ backend: backend.label }))();
if (loaded._tag === "Left") throw new Error(loaded.left.message);
const data = loaded.right;
const { indices: _indices, ...set } = randomRealSet(data, 256, 0);
const protocol = studentProtocol(PAPER_STUDENT, data.env);

const trainStart = performance.now();
const members = Array.from({ length: 10 }, (_, k) => trainStudent(set, protocol, new Rng(100 + k)).params);
const trainSeconds = (performance.now() - trainStart) / 1000 / members.length;
const students: Student[] = members.map((params) => mlpStudent(params, protocol.maxAction));

/** Times `policy` inside rollouts: best of REPEATS runs of EPISODES episodes (same seeds each time). */
async function bench(name: string, policy: BatchPolicy): Promise<void> {
  let best: Record<string, unknown> | undefined;
  let bestRate = 0;
  for (let r = 0; r < REPEATS; r++) {
    let inference = 0;
    const timed: BatchPolicy = async (states, n) => {
      const t0 = performance.now();
      const out = await policy(states, n);
      inference += performance.now() - t0;
      return out;
    };
    const t0 = performance.now();
    const result = await evaluatePolicy(data.env, timed, EPISODES, 1);
    const seconds = (performance.now() - t0) / 1000;
    const steps = result.lengths.reduce((a, b) => a + b, 0);
    if (steps / seconds > bestRate) {
      bestRate = steps / seconds;
      best = {
        env_steps: steps,
        seconds: +seconds.toFixed(4),
        steps_per_second: Math.round(steps / seconds),
        inference_fraction: +(inference / 1000 / seconds).toFixed(3),
        mean_episode_length: +(steps / EPISODES).toFixed(1),
        normalized_score: +result.meanNormalizedScore.toFixed(2),
      };
    }
  }
  console.log(JSON.stringify({
    bench: "evaluate",
    policy: name,
    env: data.env,
    backend: backend.label,
    threads: backend.threads,
    episodes: EPISODES,
    ...best,
    ...(name === "constant" ? {} : { train_seconds_per_student: +trainSeconds.toFixed(3) }),
  }));
}

await bench("student", ensemblePolicy([students[0]], set));
await bench("ensemble", ensemblePolicy(students, set));
const zeros = (n: number) => new Float32Array(n * data.actDim);
await bench("constant", (_states, n) => zeros(n));
members.forEach(disposeMlp);
if (tf.memory().numTensors > 0) console.error(`bench evaluate: ${tf.memory().numTensors} tensors left`);
