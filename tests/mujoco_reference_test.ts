/**
 * Cross-engine reference: the project's own models (envs/models/*.xml) run in Debian's MuJoCo 2.2.2
 * (`libmujoco-dev`, the last engine line with the contact rules of the engines D4RL was collected
 * with) through a small C driver built here with gcc (tests/mujoco_reference/driver.c), against the
 * project's WASM environments (MuJoCo 3.14) from the same initial states and action sequences.
 * Observations, rewards and termination of the reference are computed from the driver's raw
 * qpos/qvel with the project's spec functions (writeObservation, isHealthy) and Gym's reward.
 *
 * - Until termination (engines' default options): observations within 1e-6 for Hopper and Walker2d,
 *   for the first 30 steps of HalfCheetah (chaotic after that); rewards within 1e-6, the same
 *   termination step. The Gymnasium v5 models the same way with the warm start disabled, within 1e-9
 *   (HalfCheetah-v5: 1e-6 over 30 steps).
 * - Both engines compile the recorded body masses of every model (v3 and v5).
 * - Long horizons with the solver's warm start disabled in both engines (MuJoCo 3.3.6 changed how
 *   RK4 warm-starts): within 1e-10 over 1000 steps of zero actions, where the defaults depart by
 *   up to 3e-5 (Hopper).
 * - The test can fail: with the Hopper margin adaptation undone (MuJoCo 3.14 then sums 1 mm + 1 mm),
 *   Hopper departs by more than 1e-2 within 12 steps.
 * Needs gcc and libmujoco-dev (tests/setup-debian.sh installs the latter).
 * @module
 */

import assert from "node:assert/strict";
import { loadMujoco, LocomotionEnv, MARGIN_SUM_VERSION } from "../envs/locomotion.ts";
import {
  ALL_ENV_NAMES,
  ENV_NAMES,
  ENV_SPECS,
  type EnvName,
  type EnvSpec,
  isHealthy,
  V5_ENV_NAMES,
  writeObservation,
} from "../envs/specs.ts";
import { Rng } from "../numerics/random.ts";
import { REPO_ROOT } from "./helpers.ts";

const DRIVER_SOURCE = `${REPO_ROOT}tests/mujoco_reference/driver.c`;

let driverPromise: Promise<string> | null = null;

/** Builds the driver once per run into a temporary directory; returns the executable's path. */
function driver(): Promise<string> {
  driverPromise ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "mujoco_reference_" });
    globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
    const exe = `${dir}/driver`;
    let out: Deno.CommandOutput;
    try {
      out = await new Deno.Command("gcc", {
        args: ["-O2", "-Wall", "-o", exe, DRIVER_SOURCE, "-lmujoco", "-lm"],
        stdout: "piped",
        stderr: "piped",
      }).output();
    } catch (err) {
      throw new Error(`gcc could not be started (${err}): install gcc`);
    }
    assert.ok(
      out.success,
      `building the MuJoCo 2.2.2 driver failed (install libmujoco-dev: tests/setup-debian.sh):\n${
        new TextDecoder().decode(out.stderr)
      }`,
    );
    return exe;
  })();
  return driverPromise;
}

/** Runs the driver on `args` with `input` on stdin; returns stdout's lines. */
async function runDriver(args: string[], input = ""): Promise<string[]> {
  const child = new Deno.Command(await driver(), { args, stdin: "piped", stdout: "piped", stderr: "piped" })
    .spawn();
  // Write and read at once: either side can fill a pipe's buffer while the other waits.
  const write = async () => {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input));
    await writer.close();
  };
  const [, out] = await Promise.all([write(), child.output()]);
  assert.ok(out.success, `driver ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout).trim().split("\n");
}

const modelPath = (spec: EnvSpec) => new URL(`../envs/${spec.xmlFile}`, import.meta.url).pathname;

/** qpos/qvel after each step; with rewards and termination flags for the WASM env. */
interface Run {
  qpos: Float64Array[];
  qvel: Float64Array[];
  rewards?: number[];
  terminated?: boolean[];
}

/** The reference: the project's XML in MuJoCo 2.2.2, from (qpos, qvel), one line of state per step. */
async function referenceRun(
  spec: EnvSpec,
  qpos: ArrayLike<number>,
  qvel: ArrayLike<number>,
  actions: Float64Array[],
  warmstart: boolean,
): Promise<Run> {
  const input = [Array.from(qpos), Array.from(qvel), ...actions.map((a) => Array.from(a))]
    .map((v) => v.map((x) => x.toPrecision(17)).join(" "))
    .join("\n");
  const lines = await runDriver(
    [modelPath(spec), "run", String(spec.frameSkip), String(actions.length), warmstart ? "1" : "0"],
    input,
  );
  assert.equal(lines.length, actions.length, "one line of state per step");
  const run: Run = { qpos: [], qvel: [] };
  for (const line of lines) {
    const v = Float64Array.from(line.split(" ").map(Number));
    run.qpos.push(v.slice(0, spec.nq));
    run.qvel.push(v.slice(spec.nq, spec.nq + spec.nv));
  }
  return run;
}

/** Options that change the WASM engine away from the project's defaults (for the negative checks). */
interface WasmOptions {
  warmstart: boolean;
  /** Undo adaptContactMargins: put Gym's per-geom margins back, so MuJoCo 3.14 sums them. */
  undoMarginAdaptation?: boolean;
}

/** The project's environment from (qpos, qvel) set through `setState`. */
async function wasmRun(
  env: EnvName,
  qpos: ArrayLike<number>,
  qvel: ArrayLike<number>,
  actions: Float64Array[],
  options: WasmOptions,
): Promise<Run> {
  const mujoco = await loadMujoco();
  const e = await LocomotionEnv.create(env);
  try {
    if (!options.warmstart) {
      const opt = e.model.opt;
      opt.disableflags = opt.disableflags | mujoco.mjtDisableBit.mjDSBL_WARMSTART.value;
      opt.delete();
    }
    if (options.undoMarginAdaptation) {
      assert.ok(mujoco.mj_version() >= MARGIN_SUM_VERSION);
      const margin = e.model.geom_margin as Float64Array;
      for (let g = 0; g < margin.length; g++) margin[g] *= 2;
    }
    e.reset(); // clears the solver's warm start of any earlier episode, as a fresh MjData has it
    e.setState(qpos, qvel);
    const run: Required<Run> = { qpos: [], qvel: [], rewards: [], terminated: [] };
    for (const a of actions) {
      const r = e.step(a);
      run.qpos.push(e.getQpos());
      run.qvel.push(e.getQvel());
      run.rewards.push(r.reward);
      run.terminated.push(r.terminated);
    }
    return run;
  } finally {
    e.dispose();
  }
}

/**
 * Gym's reward from the states before and after a step: x-velocity, healthy bonus (v5: only on a
 * healthy step), control cost.
 */
function gymReward(
  spec: EnvSpec,
  xBefore: number,
  xAfter: number,
  action: Float64Array,
  healthy: boolean,
): number {
  const ctrl = action.reduce((s, a) => s + a * a, 0);
  const bonus = spec.healthyRewardOnlyWhenHealthy && !healthy ? 0 : spec.healthyReward;
  return spec.forwardRewardWeight * (xAfter - xBefore) / spec.dt + bonus - spec.ctrlCostWeight * ctrl;
}

function observation(spec: EnvSpec, qpos: Float64Array, qvel: Float64Array): Float64Array {
  const obs = new Float64Array(spec.obsDim);
  writeObservation(spec, qpos, qvel, obs, 0);
  return obs;
}

/** Per step: largest |Δ observation| and |Δ reward|; the termination step of each run (or null). */
interface Comparison {
  obsDiff: number[];
  rewardDiff: number[];
  refTermination: number | null;
  wasmTermination: number | null;
}

function compare(
  spec: EnvSpec,
  start: Float64Array,
  actions: Float64Array[],
  ref: Run,
  wasm: Run,
): Comparison {
  const out: Comparison = { obsDiff: [], rewardDiff: [], refTermination: null, wasmTermination: null };
  for (let t = 0; t < actions.length; t++) {
    const a = observation(spec, ref.qpos[t], ref.qvel[t]);
    const b = observation(spec, wasm.qpos[t], wasm.qvel[t]);
    out.obsDiff.push(Math.max(...a.map((x, i) => Math.abs(x - b[i]))));
    const xBefore = t === 0 ? start[0] : ref.qpos[t - 1][0];
    const healthy = isHealthy(spec, ref.qpos[t], ref.qvel[t]);
    const reward = gymReward(spec, xBefore, ref.qpos[t][0], actions[t], healthy);
    out.rewardDiff.push(Math.abs(reward - wasm.rewards![t]));
    const refDone = spec.terminateWhenUnhealthy && !healthy;
    if (refDone && out.refTermination === null) out.refTermination = t;
    if (wasm.terminated![t] && out.wasmTermination === null) out.wasmTermination = t;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Initial states and action sequences
// ---------------------------------------------------------------------------------------------

interface Start {
  name: string;
  qpos: Float64Array;
  qvel: Float64Array;
}

/** Two of Gym's noisy resets (seeds 1 and 2) and one hand-set state with a push and a small drop. */
async function startStates(env: EnvName): Promise<Start[]> {
  const spec = ENV_SPECS[env];
  const starts: Start[] = [];
  for (const seed of [1, 2]) {
    const e = await LocomotionEnv.create(env, { seed });
    e.reset();
    starts.push({ name: `reset seed ${seed}`, qpos: e.getQpos(), qvel: e.getQvel() });
    e.dispose();
  }
  const e = await LocomotionEnv.create(env);
  const qpos = Float64Array.from(e.model.qpos0 as Float64Array);
  e.dispose();
  qpos[0] = 0.3;
  qpos[1] += 0.05; // z (rootz for the walkers' ref 1.25; HalfCheetah's rootz is relative)
  qpos[2] = spec.terminateWhenUnhealthy ? 0.05 : 0.1;
  for (let i = 3; i < spec.nq; i++) qpos[i] = -0.05 * ((i % 3) - 1);
  const qvel = new Float64Array(spec.nv).map((_, i) => (i === 0 ? 1 : 0.2 * Math.cos(i)));
  starts.push({ name: "pushed", qpos, qvel });
  return starts;
}

type ActionKind = "uniform random" | "sine gait" | "zeros";
const ACTION_KINDS: readonly ActionKind[] = ["uniform random", "sine gait", "zeros"];

/** `steps` actions: seeded U(−1, 1), a 1.5 Hz sine per joint with phase offsets, or zeros. */
function actionSequence(spec: EnvSpec, kind: ActionKind, steps: number, seed: number): Float64Array[] {
  const rng = new Rng(seed);
  return Array.from({ length: steps }, (_, t) =>
    Float64Array.from({ length: spec.actDim }, (_, j) => {
      if (kind === "uniform random") return rng.uniformRange(-1, 1);
      if (kind === "sine gait") return 0.8 * Math.sin(2 * Math.PI * 1.5 * t * spec.dt + (j * Math.PI) / 3);
      return 0;
    }));
}

const maxOf = (v: number[], n = v.length) => Math.max(0, ...v.slice(0, n));

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

const HORIZON = 1000;
/** Every Hopper and Walker2d case below terminates well within this many steps (checked). */
const EPISODE_CAP = 300;
/** HalfCheetah is compared over its first 30 steps only: it diverges chaotically after that. */
const CHEETAH_STEPS = 30;
const TOL = 1e-6;

Deno.test("the driver runs MuJoCo 2.2.2 and compiles our models with the recorded masses", async () => {
  for (const env of ALL_ENV_NAMES) {
    const spec = ENV_SPECS[env];
    const lines = await runDriver([modelPath(spec), "masses"]);
    assert.equal(lines[0], "version 222", "Debian's libmujoco-dev is MuJoCo 2.2.2");
    const bodies = lines.slice(2).map((l) => l.split(" "));
    assert.deepEqual(bodies.map((b) => b[1]), spec.bodyMasses.map(([name]) => name), `${env} bodies`);
    bodies.forEach(([, name, mass], k) => {
      const recorded = spec.bodyMasses[k][1];
      assert.ok(
        Math.abs(Number(mass) - recorded) <= 1e-9,
        `${env} ${name}: 2.2.2 ${mass}, recorded ${recorded}`,
      );
    });
  }
});

/**
 * The D4RL (v3) environments are compared with both engines' defaults, as the issue asks: what remains
 * there is RK4's warm start (3.3.6), up to 8.9e-7 for Hopper. The v5 ones, the same physics but for
 * inertia and a friction, with the warm start disabled in both (their default runs reach 1.0e-6).
 */
const UNTIL_TERMINATION = [
  ...ENV_NAMES.map((env) => ({ env, warmstart: true, tol: TOL })),
  // HalfCheetah's chaos does not depend on the warm start: 1e-6 over its 30 steps as for v3.
  ...V5_ENV_NAMES.map((env) => ({
    env,
    warmstart: false,
    tol: ENV_SPECS[env].terminateWhenUnhealthy ? 1e-9 : TOL,
  })),
];

for (const { env, warmstart, tol } of UNTIL_TERMINATION) {
  const setting = warmstart ? "defaults" : "no warm start";
  Deno.test(`${env}: MuJoCo 2.2.2 and the WASM env agree until termination (${setting}), 3 starts × 3 action sequences`, async () => {
    const spec = ENV_SPECS[env];
    const steps = spec.terminateWhenUnhealthy ? EPISODE_CAP : CHEETAH_STEPS;
    const summary: string[] = [];
    let seed = 0;
    for (const start of await startStates(env)) {
      for (const kind of ACTION_KINDS) {
        const actions = actionSequence(spec, kind, steps, seed++);
        const ref = await referenceRun(spec, start.qpos, start.qvel, actions, warmstart);
        const wasm = await wasmRun(env, start.qpos, start.qvel, actions, { warmstart });
        const c = compare(spec, start.qpos, actions, ref, wasm);
        const what = `${env}, ${start.name}, ${kind}`;
        assert.equal(c.wasmTermination, c.refTermination, `${what}: termination step`);
        if (spec.terminateWhenUnhealthy) {
          assert.ok(c.refTermination !== null, `${what}: whole episode compared`);
        }
        const n = c.refTermination === null ? steps : c.refTermination + 1;
        summary.push(
          `${start.name} / ${kind}: ${n} steps${c.refTermination === null ? "" : " (terminated)"}, ` +
            `|Δobs| ≤ ${maxOf(c.obsDiff, n).toExponential(1)}, |Δreward| ≤ ${
              maxOf(c.rewardDiff, n).toExponential(1)
            }`,
        );
        assert.ok(maxOf(c.obsDiff, n) <= tol, `${what}: |Δobs| ${maxOf(c.obsDiff, n)} > ${tol}`);
        assert.ok(maxOf(c.rewardDiff, n) <= tol, `${what}: |Δreward| ${maxOf(c.rewardDiff, n)} > ${tol}`);
      }
    }
    console.log(`${env} (${setting}):\n  ${summary.join("\n  ")}`);
  });
}

Deno.test(`at rest over ${HORIZON} steps: the engines agree to 1e-10 with the warm start disabled in both`, async () => {
  // Zero actions until the body lies still on the floor: contact-rich but not chaotic (with actions,
  // a fallen body's contacts amplify rounding differences past step ~100 in either setting).
  const cases = [["hopper", 0], ["hopper", 2], ["walker2d", 2]] as const;
  const summary: string[] = [];
  for (const [env, k] of cases) {
    const spec = ENV_SPECS[env];
    const start = (await startStates(env))[k];
    const actions = actionSequence(spec, "zeros", HORIZON, 0);
    const diff: Record<string, number> = {};
    for (const warmstart of [false, true]) {
      const ref = await referenceRun(spec, start.qpos, start.qvel, actions, warmstart);
      const wasm = await wasmRun(env, start.qpos, start.qvel, actions, { warmstart });
      diff[warmstart ? "default" : "no warm start"] = maxOf(
        compare(spec, start.qpos, actions, ref, wasm).obsDiff,
      );
    }
    summary.push(
      `${env}, ${start.name}: |Δobs| ≤ ${diff["no warm start"].toExponential(1)} without warm start, ` +
        `${diff.default.toExponential(1)} with the defaults`,
    );
    assert.ok(
      diff["no warm start"] <= 1e-10,
      `${env}, ${start.name}: |Δobs| ${diff["no warm start"]} > 1e-10`,
    );
  }
  console.log(summary.join("\n"));
});

Deno.test("the comparison fails for Hopper when the margin adaptation is undone (1 mm + 1 mm summed)", async () => {
  const spec = ENV_SPECS.hopper;
  const [start] = await startStates("hopper");
  const summary: string[] = [];
  for (const kind of ["uniform random", "sine gait"] as const) {
    const actions = actionSequence(spec, kind, 12, 7);
    const ref = await referenceRun(spec, start.qpos, start.qvel, actions, true);
    const wasm = await wasmRun("hopper", start.qpos, start.qvel, actions, {
      warmstart: true,
      undoMarginAdaptation: true,
    });
    const c = compare(spec, start.qpos, actions, ref, wasm);
    const first = c.obsDiff.findIndex((d) => d > TOL);
    summary.push(
      `${kind}: |Δobs| > ${TOL} from step ${first + 1}, ${maxOf(c.obsDiff).toExponential(1)} by step 12`,
    );
    assert.ok(
      maxOf(c.obsDiff) > 1e-2,
      `${kind}: |Δobs| only ${maxOf(c.obsDiff)} in 12 steps without the adaptation`,
    );
  }
  console.log(`hopper without the margin adaptation:\n  ${summary.join("\n  ")}`);
});
