/**
 * Environment throughput: each env stepped with uniform random actions on one thread, as a
 * single environment and as a vectorized batch, auto-resetting finished episodes as collection
 * would. Prints one JSON object per line:
 *   {"bench":"env","env":"hopper","mode":"single","numEnvs":1,"steps":N,"seconds":s,"stepsPerSecondPerCore":x}
 * `steps` counts environment steps (each is frameSkip MuJoCo steps), summed over the batch.
 *
 * Usage: deno run --allow-read bench/env.ts [--steps N] [--vec K]   (defaults 20000 and 8)
 * @module
 */

import { LocomotionEnv, VecLocomotionEnv } from "../envs/locomotion.ts";
import { ENV_NAMES, type EnvName } from "../envs/specs.ts";
import { Rng } from "../numerics/random.ts";
import { intArg } from "./args.ts";

const STEPS = intArg("--steps", 20000, 1);
const VEC = intArg("--vec", 8, 1);
const WARMUP = 200; // lets the JIT settle before timing

/** Pre-drawn actions so that the timed loop measures the environment, not the RNG. */
function actionTable(actDim: number, rows: number, seed: number): Float32Array {
  return new Rng(seed).fillUniform(new Float32Array(rows * actDim), -1, 1);
}
const TABLE_ROWS = 1024;

async function benchSingle(name: EnvName, steps: number): Promise<number> {
  const env = await LocomotionEnv.create(name, { seed: 1 });
  try {
    const { actDim, obsDim } = env.spec;
    const table = actionTable(actDim, TABLE_ROWS, 2);
    const obs = new Float32Array(obsDim);
    const run = (n: number) => {
      env.reset(obs);
      for (let t = 0; t < n; t++) {
        const row = t % TABLE_ROWS;
        const r = env.step(table.subarray(row * actDim, (row + 1) * actDim), obs);
        if (r.terminated || r.truncated) env.reset(obs);
      }
    };
    run(WARMUP);
    const t0 = performance.now();
    run(steps);
    return (performance.now() - t0) / 1000;
  } finally {
    env.dispose();
  }
}

async function benchVec(name: EnvName, numEnvs: number, stepsTotal: number): Promise<number> {
  const env = await VecLocomotionEnv.create(name, numEnvs, { seed: 1 });
  try {
    const { actDim } = env.spec;
    const table = actionTable(actDim * numEnvs, TABLE_ROWS, 3);
    const rowLen = actDim * numEnvs;
    const run = (batches: number) => {
      env.resetAll();
      for (let t = 0; t < batches; t++) {
        const row = t % TABLE_ROWS;
        const out = env.step(table.subarray(row * rowLen, (row + 1) * rowLen));
        for (let i = 0; i < numEnvs; i++) if (out.terminated[i] || out.truncated[i]) env.reset(i);
      }
    };
    run(Math.ceil(WARMUP / numEnvs));
    const t0 = performance.now();
    run(stepsTotal / numEnvs);
    return (performance.now() - t0) / 1000;
  } finally {
    env.dispose();
  }
}

function report(env: EnvName, mode: string, numEnvs: number, steps: number, seconds: number): void {
  console.log(JSON.stringify({
    bench: "env",
    env,
    mode,
    numEnvs,
    steps,
    seconds: Number(seconds.toFixed(4)),
    stepsPerSecondPerCore: Math.round(steps / seconds),
  }));
}

for (const name of ENV_NAMES) {
  report(name, "single", 1, STEPS, await benchSingle(name, STEPS));
  const vecSteps = Math.ceil(STEPS / VEC) * VEC;
  report(name, "vectorized", VEC, vecSteps, await benchVec(name, VEC, vecSteps));
}
