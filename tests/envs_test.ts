/**
 * Tests of envs/locomotion.ts and envs/models/*.xml against Gym v3 semantics and geometry.
 * Run: deno test --allow-read=. tests/envs_test.ts
 */

import assert from "node:assert/strict";
import {
  compileModel,
  loadModel,
  loadMujoco,
  LocomotionEnv,
  MARGIN_SUM_VERSION,
  readModelXml,
  VecLocomotionEnv,
} from "../envs/locomotion.ts";
import { assertFails } from "./helpers.ts";
import {
  ALL_ENV_NAMES,
  type D4rlEnvName,
  ENV_NAMES,
  ENV_SPECS,
  type EnvName,
  isHealthy,
  normalizedScore,
} from "../envs/specs.ts";
import { Rng } from "../numerics/random.ts";

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

async function withEnv<T>(
  name: EnvName,
  seed: number,
  fn: (env: LocomotionEnv) => T | Promise<T>,
): Promise<T> {
  const env = await LocomotionEnv.create(name, { seed });
  try {
    return await fn(env);
  } finally {
    env.dispose();
  }
}

function assertClose(actual: number, expected: number, tol: number, what = ""): void {
  assert.ok(
    Math.abs(actual - expected) <= tol,
    `${what}: expected ${expected}, got ${actual} (|diff| ${Math.abs(actual - expected)} > ${tol})`,
  );
}

function assertAllClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  tol: number,
  what = "",
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) assertClose(actual[i], expected[i], tol, `${what}[${i}]`);
}

/** Bitwise equality (Object.is per element: distinguishes -0 and compares NaN as equal). */
function assertBitwiseEqual(a: ArrayLike<number>, b: ArrayLike<number>, what = ""): void {
  assert.equal(a.length, b.length, `${what}: length`);
  for (let i = 0; i < a.length; i++) assert.ok(Object.is(a[i], b[i]), `${what}[${i}]: ${a[i]} !== ${b[i]}`);
}

function randomActions(rng: Rng, n: number): Float32Array {
  return rng.fillUniform(new Float32Array(n), -1, 1);
}

const zeros = (n: number) => new Array<number>(n).fill(0);

// ---------------------------------------------------------------------------------------------
// specs, dimensions, observations
// ---------------------------------------------------------------------------------------------

Deno.test("specs: dimensions, timing and D4RL reference scores", () => {
  const expected = {
    hopper: { obs: 11, act: 3, nq: 6, nv: 6, skip: 4, ts: 0.002, dt: 0.008 },
    halfcheetah: { obs: 17, act: 6, nq: 9, nv: 9, skip: 5, ts: 0.01, dt: 0.05 },
    walker2d: { obs: 17, act: 6, nq: 9, nv: 9, skip: 4, ts: 0.002, dt: 0.008 },
  };
  for (const name of ENV_NAMES) {
    const s = ENV_SPECS[name];
    const e = expected[name];
    assert.equal(s.obsDim, e.obs, name);
    assert.equal(s.actDim, e.act, name);
    assert.equal(s.obsDim, s.nq - 1 + s.nv, name);
    assert.equal(s.frameSkip, e.skip, name);
    assert.equal(s.timestep, e.ts, name);
    assertClose(s.dt, e.dt, 1e-15, name);
    assert.equal(s.horizon, 1000, name);
    assert.deepEqual([s.actionLow, s.actionHigh], [-1, 1], name);
  }
  // D4RL's ref scores: 0 at the random return, 100 at the expert return.
  assertClose(normalizedScore("hopper", -20.272305), 0, 1e-12, "hopper min");
  assertClose(normalizedScore("hopper", 3234.3), 100, 1e-12, "hopper max");
  assertClose(normalizedScore("halfcheetah", 12135.0), 100, 1e-12, "cheetah max");
  assertClose(normalizedScore("walker2d", 1.629008), 0, 1e-12, "walker min");
  // 100 · (2000 − 1.629008) / (4592.3 − 1.629008) = 43.53...
  assertClose(
    normalizedScore("walker2d", 2000),
    (100 * (2000 - 1.629008)) / (4592.3 - 1.629008),
    1e-12,
    "walker",
  );
  assertClose(normalizedScore("halfcheetah", 0), 2.2567, 1e-4, "cheetah 0");
});

Deno.test("observations are [qpos[1:], clip(qvel, ±10)] (HalfCheetah unclipped) with the spec's sizes", async () => {
  for (const name of ENV_NAMES) {
    await withEnv(name, 3, (env) => {
      const s = env.spec;
      const obs0 = env.reset();
      assert.equal(obs0.length, s.obsDim, name);
      const r = env.step(new Float32Array(s.actDim).fill(0.3));
      assert.equal(r.obs.length, s.obsDim, name);
      // Put large velocities in to see the clipping.
      const qpos = env.getQpos();
      const qvel = Float64Array.from({ length: s.nv }, (_, i) => (i % 2 === 0 ? 25 : -25) + i);
      const obs = env.setState(qpos, qvel);
      for (let i = 1; i < s.nq; i++) assert.equal(obs[i - 1], Math.fround(qpos[i]), `${name} qpos[${i}]`);
      for (let i = 0; i < s.nv; i++) {
        const v = name === "halfcheetah" ? qvel[i] : Math.min(Math.max(qvel[i], -10), 10);
        assert.equal(obs[s.nq - 1 + i], Math.fround(v), `${name} qvel[${i}]`);
      }
    });
  }
});

Deno.test("step validates the action length and refuses to run before reset", async () => {
  await withEnv("hopper", 0, (env) => {
    assert.throws(() => env.step([0, 0, 0]), /reset/);
    env.reset();
    assert.throws(() => env.step([0, 0]), RangeError);
    assert.equal(env.step([0, 0, 0]).obs.length, 11);
  });
});

// ---------------------------------------------------------------------------------------------
// rewards
// ---------------------------------------------------------------------------------------------

Deno.test("reward of a transition recomputed by hand from qpos before/after and the action", async () => {
  // reward = (x_after − x_before)/dt + healthy − w·Σa², with the *unclipped* action in the cost.
  const cases: Record<D4rlEnvName, { action: number[]; healthy: number; w: number; dt: number }> = {
    hopper: { action: [0.5, -1.5, 0.25], healthy: 1, w: 1e-3, dt: 0.008 },
    halfcheetah: { action: [0.5, -1.5, 0.25, 1, -0.75, 2], healthy: 0, w: 0.1, dt: 0.05 },
    walker2d: { action: [0.5, -1.5, 0.25, 1, -0.75, 2], healthy: 1, w: 1e-3, dt: 0.008 },
  };
  for (const name of ENV_NAMES) {
    const c = cases[name];
    await withEnv(name, 11, (env) => {
      env.reset();
      for (let t = 0; t < 5; t++) env.step(new Float32Array(env.spec.actDim).fill(0.2));
      const xBefore = env.getQpos()[0];
      const r = env.step(Float32Array.from(c.action));
      const xAfter = env.getQpos()[0];
      const sumSq = c.action.reduce((s, a) => s + Math.fround(a) ** 2, 0);
      const expected = (xAfter - xBefore) / c.dt + c.healthy - c.w * sumSq;
      assertClose(r.reward, expected, 1e-12, `${name} reward`);
      assert.ok(xAfter !== xBefore, `${name}: the body should move`);
      // The ctrl cost term alone, as a number: hopper 1e-3·(0.25+2.25+0.0625) = 0.0025625.
      if (name === "hopper") assertClose(c.w * sumSq, 0.0025625, 1e-15, "hopper ctrl cost");
    });
  }
});

Deno.test("actions are clamped to [-1, 1] by MuJoCo but the ctrl cost uses the raw action", async () => {
  const run = async (action: number[]) =>
    await withEnv("halfcheetah", 5, (env) => {
      env.reset();
      const r = env.step(action);
      return { reward: r.reward, qpos: env.getQpos() };
    });
  const clipped = await run([1, -1, 1, -1, 1, -1]);
  const raw = await run([3, -2, 1, -1, 1, -1]);
  assertBitwiseEqual(raw.qpos, clipped.qpos, "same physics");
  // Extra cost: 0.1 · ((9 − 1) + (4 − 1)) = 1.1
  assertClose(clipped.reward - raw.reward, 1.1, 1e-12, "ctrl cost difference");
});

Deno.test("x-velocity of a hand-set state: Hopper moving at 150 m/s in the air", async () => {
  await withEnv("hopper", 0, (env) => {
    env.reset();
    // Upright at the initial height, feet 4 cm above ground: no contact, no torque, so the body
    // translates rigidly and x advances by 150 · 0.008 = 1.2 m.
    env.setState([0, 1.25, 0, 0, 0, 0], [150, 0, 0, 0, 0, 0]);
    const r = env.step([0, 0, 0]);
    assertClose(env.getQpos()[0], 1.2, 1e-9, "x after");
    assertClose(r.reward, 150 + 1, 1e-7, "reward = x-velocity + healthy");
    assert.equal(r.obs[5], 10, "observed x-velocity clipped to 10");
    // ...but the unclipped 150 is in state[2:], so the Hopper is unhealthy.
    assert.equal(r.terminated, true);
  });
});

// ---------------------------------------------------------------------------------------------
// termination
// ---------------------------------------------------------------------------------------------

Deno.test("Hopper termination: z ≤ 0.7, |angle| ≥ 0.2, any of (qpos[2:], qvel) outside ±100", async () => {
  await withEnv("hopper", 0, (env) => {
    env.reset();
    const step0 = () => env.step([0, 0, 0]);

    env.setState([0, 1.25, 0, 0, 0, 0], zeros(6));
    let r = step0();
    assert.equal(r.terminated, false, "upright at rest is healthy");
    assertClose(r.reward, 1, 1e-3, "standing still pays ~ the healthy reward");

    env.setState([0, 0.5, 0, 0, 0, 0], zeros(6));
    r = step0();
    assert.ok(env.getQpos()[1] < 0.7, `z after step ${env.getQpos()[1]}`);
    assert.equal(r.terminated, true, "z low");
    // The healthy reward is still paid on the terminating step (terminate_when_unhealthy=True).
    const x = env.getQpos()[0];
    assertClose(r.reward, x / 0.008 + 1, 1e-9, "healthy reward on terminating step");

    for (const angle of [0.3, -0.3]) {
      env.setState([0, 1.25, angle, 0, 0, 0], zeros(6));
      r = step0();
      assert.ok(Math.abs(env.getQpos()[2]) >= 0.2);
      assert.equal(r.terminated, true, `angle ${angle}`);
    }

    env.setState([0, 1.25, 0, 0, 0, 0], [0, 0, 0, -150, 0, 0]);
    r = step0();
    assert.ok(env.getQvel().some((v) => Math.abs(v) >= 100), "a joint velocity stays beyond 100");
    assert.equal(r.terminated, true, "thigh velocity −150");

    // qpos[0] (x) and qpos[1] (z) are not part of state[2:]: far away and high up is healthy.
    env.setState([1000, 150, 0, 0, 0, 0], zeros(6));
    r = step0();
    assert.equal(r.terminated, false, "x = 1000, z = 150");
  });

  // The predicate itself, at the boundaries (strict inequalities, NaN unhealthy).
  const s = ENV_SPECS.hopper;
  const ok = (qpos: number[], qvel = zeros(6)) => isHealthy(s, qpos, qvel);
  assert.equal(ok([0, 0.7, 0, 0, 0, 0]), false, "z = 0.7");
  assert.equal(ok([0, 0.7000001, 0, 0, 0, 0]), true, "z just above");
  assert.equal(ok([0, 1.25, 0.2, 0, 0, 0]), false, "angle = 0.2");
  assert.equal(ok([0, 1.25, -0.1999, 0, 0, 0]), true, "angle -0.1999");
  assert.equal(ok([0, 1.25, 0, 100, 0, 0]), false, "joint angle 100");
  assert.equal(ok([0, 1.25, 0, 99.9, 0, 0]), true, "joint angle 99.9");
  assert.equal(ok([0, 1.25, 0, 0, 0, 0], [0, 0, 0, 0, 0, -100]), false, "foot velocity −100");
  assert.equal(ok([0, 1.25, 0, 0, 0, 0], [-99.9, 0, 0, 0, 0, 0]), true, "x velocity −99.9");
  assert.equal(ok([0, 1.25, 0, NaN, 0, 0]), false, "NaN");
});

Deno.test("Walker2d termination: z outside (0.8, 2.0) or angle outside (−1, 1)", async () => {
  await withEnv("walker2d", 0, (env) => {
    env.reset();
    const q = (z: number, angle: number) => [0, z, angle, 0, 0, 0, 0, 0, 0];
    const cases: [string, number, number, boolean][] = [
      ["upright", 1.25, 0, false],
      ["z low", 0.6, 0, true],
      ["z high", 2.1, 0, true],
      ["angle +", 1.25, 1.2, true],
      ["angle −", 1.25, -1.2, true],
      ["angle 0.9", 1.25, 0.9, false],
    ];
    for (const [what, z, angle, terminated] of cases) {
      env.setState(q(z, angle), zeros(9));
      const r = env.step(zeros(6));
      const [, zAfter, angleAfter] = env.getQpos();
      assert.equal(r.terminated, terminated, `${what}: z ${zAfter}, angle ${angleAfter}`);
      assert.equal(r.terminated, !(0.8 < zAfter && zAfter < 2 && -1 < angleAfter && angleAfter < 1), what);
      assertClose(r.reward, (env.getQpos()[0] - 0) / 0.008 + 1, 1e-9, `${what}: reward`);
    }
    // Unlike Hopper, large velocities do not end a Walker2d episode.
    env.setState(q(1.25, 0), [150, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert.equal(env.step(zeros(6)).terminated, false, "fast walker is healthy");
  });
  const s = ENV_SPECS.walker2d;
  assert.equal(isHealthy(s, [0, 0.8, 0], []), false, "z = 0.8");
  assert.equal(isHealthy(s, [0, 2.0, 0], []), false, "z = 2.0");
  assert.equal(isHealthy(s, [0, 1.999, -0.999], []), true, "inside");
  assert.equal(isHealthy(s, [0, 1.2, 1.0], []), false, "angle = 1");
});

Deno.test("HalfCheetah never terminates, even upside down and underground", async () => {
  await withEnv("halfcheetah", 0, (env) => {
    env.reset();
    env.setState([0, -0.5, Math.PI, 0, 0, 0, 0, 0, 0], [0, 0, 500, 0, 0, 0, 0, 0, 0]);
    const r = env.step(zeros(6));
    assert.equal(r.terminated, false);
    assert.ok(Number.isFinite(r.reward));
  });
});

Deno.test("truncation at 1000 steps (HalfCheetah, random actions), and reset restarts the count", async () => {
  await withEnv("halfcheetah", 2, (env) => {
    const rng = new Rng(99);
    env.reset();
    let firstTruncation = -1;
    let terminations = 0;
    for (let t = 1; t <= 1000; t++) {
      const r = env.step(randomActions(rng, 6));
      if (r.terminated) terminations++;
      if (r.truncated && firstTruncation < 0) firstTruncation = t;
    }
    assert.equal(terminations, 0);
    assert.equal(firstTruncation, 1000);
    assert.equal(env.elapsedSteps, 1000);
    env.reset();
    assert.equal(env.elapsedSteps, 0);
    assert.equal(env.step(zeros(6)).truncated, false);
  });
});

Deno.test("zero-action Hopper falls and terminates well before 1000 steps", async () => {
  await withEnv("hopper", 1, (env) => {
    env.reset();
    let t = 0;
    let terminated = false;
    while (!terminated && t < 1000) {
      terminated = env.step([0, 0, 0]).terminated;
      t++;
    }
    assert.equal(terminated, true);
    assert.ok(t > 20 && t < 400, `terminated after ${t} steps`);
    const [, z, angle] = env.getQpos();
    assert.ok(z <= 0.7 || Math.abs(angle) >= 0.2, `z ${z} angle ${angle}`);
  });
});

// ---------------------------------------------------------------------------------------------
// reset noise, seeding, determinism
// ---------------------------------------------------------------------------------------------

Deno.test("reset noise: ±5e-3 uniform (Hopper, Walker2d); ±0.1 uniform qpos and N(0, 0.1²) qvel (HalfCheetah)", async () => {
  for (const name of ["hopper", "walker2d"] as const) {
    await withEnv(name, 4, (env) => {
      const qpos0 = name === "hopper" ? [0, 1.25, 0, 0, 0, 0] : [0, 1.25, 0, 0, 0, 0, 0, 0, 0];
      let maxDev = 0;
      for (let k = 0; k < 50; k++) {
        env.reset();
        const qpos = env.getQpos();
        const qvel = env.getQvel();
        for (let i = 0; i < qpos.length; i++) maxDev = Math.max(maxDev, Math.abs(qpos[i] - qpos0[i]));
        for (const v of qvel) maxDev = Math.max(maxDev, Math.abs(v));
      }
      assert.ok(maxDev <= 5e-3 && maxDev > 4e-3, `${name} max deviation ${maxDev}`);
    });
  }
  await withEnv("halfcheetah", 4, (env) => {
    let maxQpos = 0;
    let sumSq = 0;
    let n = 0;
    for (let k = 0; k < 200; k++) {
      env.reset();
      for (const q of env.getQpos()) maxQpos = Math.max(maxQpos, Math.abs(q));
      for (const v of env.getQvel()) {
        sumSq += v * v;
        n++;
      }
    }
    assert.ok(maxQpos <= 0.1 && maxQpos > 0.09, `max |qpos| ${maxQpos}`);
    const std = Math.sqrt(sumSq / n); // 1800 samples: standard error of the std ≈ 0.0017
    assert.ok(std > 0.092 && std < 0.108, `qvel std ${std}`);
  });
});

Deno.test("same seed and actions ⇒ bitwise identical trajectory; different seeds ⇒ different reset", async () => {
  for (const name of ENV_NAMES) {
    const rollout = (seed: number) =>
      withEnv(name, seed, (env) => {
        const rng = new Rng(1234);
        const obs: number[] = Array.from(env.reset());
        const rewards: number[] = [];
        for (let t = 0; t < 150; t++) {
          const r = env.step(randomActions(rng, env.spec.actDim));
          obs.push(...r.obs);
          rewards.push(r.reward);
          if (r.terminated || r.truncated) obs.push(...env.reset());
        }
        return { obs, rewards };
      });
    const a = await rollout(42);
    const b = await rollout(42);
    assertBitwiseEqual(a.obs, b.obs, `${name} obs`);
    assertBitwiseEqual(a.rewards, b.rewards, `${name} rewards`);

    const resets = await Promise.all([1, 2].map((seed) => withEnv(name, seed, (env) => env.reset())));
    const differing = resets[0].filter((v, i) => v !== resets[1][i]).length;
    assert.equal(differing, resets[0].length, `${name}: every reset coordinate differs across seeds`);
  }
});

Deno.test("vectorized environments equal single environments stepped one by one", async () => {
  const n = 3;
  for (const name of ENV_NAMES) {
    const vec = await VecLocomotionEnv.create(name, n, { seed: 5 });
    // VecLocomotionEnv gives env i the i-th fork of new Rng(seed).
    const root = new Rng(5);
    const singles: LocomotionEnv[] = [];
    for (let i = 0; i < n; i++) singles.push(await LocomotionEnv.create(name, { rng: root.fork() }));
    try {
      const { obsDim, actDim } = vec.spec;
      vec.resetAll();
      for (let i = 0; i < n; i++) {
        assertBitwiseEqual(vec.obs.subarray(i * obsDim, (i + 1) * obsDim), singles[i].reset());
      }
      const rng = new Rng(77);
      let resets = 0;
      for (let t = 0; t < 200; t++) {
        const actions = randomActions(rng, n * actDim);
        const out = vec.step(actions);
        for (let i = 0; i < n; i++) {
          const r = singles[i].step(actions.subarray(i * actDim, (i + 1) * actDim));
          assertBitwiseEqual(out.obs.subarray(i * obsDim, (i + 1) * obsDim), r.obs, `${name} t${t} env${i}`);
          assert.ok(Object.is(out.rewards[i], r.reward), `${name} reward t${t} env${i}`);
          assert.equal(out.terminated[i], r.terminated ? 1 : 0);
          assert.equal(out.truncated[i], r.truncated ? 1 : 0);
          if (r.terminated || r.truncated) {
            resets++;
            assertBitwiseEqual(vec.reset(i), singles[i].reset(), `${name} reset env${i}`);
          }
        }
      }
      if (name !== "halfcheetah") assert.ok(resets > 0, `${name}: random actions should end some episodes`);

      // An inactive environment is left untouched.
      const before = vec.getQpos(1);
      const obsBefore = vec.obs.slice(obsDim, 2 * obsDim);
      const out = vec.step(new Float32Array(n * actDim).fill(0.5), Uint8Array.of(1, 0, 1));
      assertBitwiseEqual(vec.getQpos(1), before, "inactive qpos");
      assertBitwiseEqual(out.obs.subarray(obsDim, 2 * obsDim), obsBefore, "inactive obs");
      assert.equal(out.rewards[1], 0);
      assert.ok(vec.elapsedSteps(0) > 0);
    } finally {
      vec.dispose();
      for (const s of singles) s.dispose();
    }
  }
});

Deno.test("cached qpos views survive WASM heap growth (new MjData after an env exists)", async () => {
  await withEnv("hopper", 8, async (env) => {
    env.reset();
    env.step([0.1, 0.2, 0.3]);
    const before = env.getQpos();
    const rawView = env.data.qpos as Float64Array; // what a naive cache would keep
    assert.equal(rawView.length, 6);
    // Allocate MuJoCo memory until the WASM heap grows and detaches old views (earlier tests
    // may have left free space in the heap, so one allocation is not always enough).
    const big: VecLocomotionEnv[] = [];
    try {
      for (let k = 0; k < 12 && rawView.length > 0; k++) {
        big.push(await VecLocomotionEnv.create("walker2d", 8));
      }
      assert.equal(rawView.length, 0, "the heap grew and detached the old view");
      assertBitwiseEqual(env.getQpos(), before, "qpos after growth");
      const r = env.step([0.1, 0.2, 0.3]);
      assert.equal(r.obs.length, 11);
      assert.ok(env.getQpos()[0] !== before[0]);
    } finally {
      for (const b of big) b.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------------
// geometry: local-coordinate XML reproduces Gym's global-coordinate XML
// ---------------------------------------------------------------------------------------------

/** Expected world geometry at qpos0, taken from Gym v3's XML files. */
interface ExpectedGeometry {
  /** body name → world position. */
  bodies: Record<string, [number, number, number]>;
  /** joint name → [world anchor, world axis]. */
  joints: Record<string, [[number, number, number], [number, number, number]]>;
  /** capsule geom name → [radius, end A, end B] (world). */
  capsules: Record<string, [number, [number, number, number], [number, number, number]]>;
}

// Hopper-v3 hopper.xml (coordinate="global"): values copied from its pos / fromto attributes.
const HOPPER_GEOMETRY: ExpectedGeometry = {
  bodies: { torso: [0, 0, 1.25], thigh: [0, 0, 1.05], leg: [0, 0, 0.35], foot: [0.13, 0, 0] },
  joints: {
    rootx: [[0, 0, 0], [1, 0, 0]],
    rootz: [[0, 0, 0], [0, 0, 1]],
    rooty: [[0, 0, 1.25], [0, 1, 0]],
    thigh_joint: [[0, 0, 1.05], [0, -1, 0]],
    leg_joint: [[0, 0, 0.6], [0, -1, 0]],
    foot_joint: [[0, 0, 0.1], [0, -1, 0]],
  },
  capsules: {
    torso_geom: [0.05, [0, 0, 1.45], [0, 0, 1.05]],
    thigh_geom: [0.05, [0, 0, 1.05], [0, 0, 0.6]],
    leg_geom: [0.04, [0, 0, 0.6], [0, 0, 0.1]],
    foot_geom: [0.06, [-0.13, 0, 0.1], [0.26, 0, 0.1]],
  },
};

// Walker2d-v3 walker2d.xml (coordinate="global"): same torso/thigh/leg as Hopper, feet at x 0..0.2,
// left leg identical to the right one.
const WALKER_GEOMETRY: ExpectedGeometry = {
  bodies: {
    torso: [0, 0, 1.25],
    thigh: [0, 0, 1.05],
    leg: [0, 0, 0.35],
    foot: [0.2, 0, 0],
    thigh_left: [0, 0, 1.05],
    leg_left: [0, 0, 0.35],
    foot_left: [0.2, 0, 0],
  },
  joints: {
    rootx: [[0, 0, 0], [1, 0, 0]],
    rootz: [[0, 0, 0], [0, 0, 1]],
    rooty: [[0, 0, 1.25], [0, 1, 0]],
    thigh_joint: [[0, 0, 1.05], [0, -1, 0]],
    leg_joint: [[0, 0, 0.6], [0, -1, 0]],
    foot_joint: [[0, 0, 0.1], [0, -1, 0]],
    thigh_left_joint: [[0, 0, 1.05], [0, -1, 0]],
    leg_left_joint: [[0, 0, 0.6], [0, -1, 0]],
    foot_left_joint: [[0, 0, 0.1], [0, -1, 0]],
  },
  capsules: {
    torso_geom: [0.05, [0, 0, 1.45], [0, 0, 1.05]],
    thigh_geom: [0.05, [0, 0, 1.05], [0, 0, 0.6]],
    leg_geom: [0.04, [0, 0, 0.6], [0, 0, 0.1]],
    foot_geom: [0.06, [0, 0, 0.1], [0.2, 0, 0.1]],
    thigh_left_geom: [0.05, [0, 0, 1.05], [0, 0, 0.6]],
    leg_left_geom: [0.04, [0, 0, 0.6], [0, 0, 0.1]],
    foot_left_geom: [0.06, [0, 0, 0.1], [0.2, 0, 0.1]],
  },
};

/**
 * HalfCheetah-v3 half_cheetah.xml is in local coordinates; world values by composing its body
 * pos chain from torso (0 0 .7): bthigh −.5 0 0, bshin +.16 0 −.25, bfoot −.28 0 −.14, fthigh
 * +.5 0 0, fshin −.14 0 −.24, ffoot +.13 0 −.18. A capsule with `pos` p, half-length h and
 * axisangle (0 1 0 θ) runs along (sin θ, 0, cos θ): ends = p ± h·(sin θ, 0, cos θ).
 */
function cheetahCapsule(
  body: [number, number, number],
  pos: [number, number, number],
  h: number,
  theta: number,
): [number, [number, number, number], [number, number, number]] {
  const c = [body[0] + pos[0], body[1] + pos[1], body[2] + pos[2]];
  const a = [Math.sin(theta), 0, Math.cos(theta)];
  return [
    0.046,
    [c[0] + h * a[0], c[1], c[2] + h * a[2]],
    [c[0] - h * a[0], c[1], c[2] - h * a[2]],
  ];
}
const CHEETAH_BODIES: Record<string, [number, number, number]> = {
  torso: [0, 0, 0.7],
  bthigh: [-0.5, 0, 0.7],
  bshin: [-0.34, 0, 0.45],
  bfoot: [-0.62, 0, 0.31],
  fthigh: [0.5, 0, 0.7],
  fshin: [0.36, 0, 0.46],
  ffoot: [0.49, 0, 0.28],
};
const CHEETAH_GEOMETRY: ExpectedGeometry = {
  bodies: CHEETAH_BODIES,
  joints: Object.fromEntries([
    ["rootx", [[0, 0, 0.7], [1, 0, 0]]],
    ["rootz", [[0, 0, 0.7], [0, 0, 1]]],
    ["rooty", [[0, 0, 0.7], [0, 1, 0]]],
    ...["bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"].map((
      b,
    ) => [b, [CHEETAH_BODIES[b], [0, 1, 0]]]),
  ]),
  capsules: {
    torso: [0.046, [-0.5, 0, 0.7], [0.5, 0, 0.7]], // fromto −.5 0 0 → .5 0 0
    head: cheetahCapsule(CHEETAH_BODIES.torso, [0.6, 0, 0.1], 0.15, 0.87),
    bthigh: cheetahCapsule(CHEETAH_BODIES.bthigh, [0.1, 0, -0.13], 0.145, -3.8),
    bshin: cheetahCapsule(CHEETAH_BODIES.bshin, [-0.14, 0, -0.07], 0.15, -2.03),
    bfoot: cheetahCapsule(CHEETAH_BODIES.bfoot, [0.03, 0, -0.097], 0.094, -0.27),
    fthigh: cheetahCapsule(CHEETAH_BODIES.fthigh, [-0.07, 0, -0.12], 0.133, 0.52),
    fshin: cheetahCapsule(CHEETAH_BODIES.fshin, [0.065, 0, -0.09], 0.106, -0.6),
    ffoot: cheetahCapsule(CHEETAH_BODIES.ffoot, [0.045, 0, -0.07], 0.07, -0.6),
  },
};

const GEOMETRY: Record<D4rlEnvName, ExpectedGeometry> = {
  hopper: HOPPER_GEOMETRY,
  halfcheetah: CHEETAH_GEOMETRY,
  walker2d: WALKER_GEOMETRY,
};

Deno.test("geometry: world positions at qpos0 equal Gym's global coordinates", async () => {
  const mujoco = await loadMujoco();
  const OBJ_BODY = mujoco.mjtObj.mjOBJ_BODY.value;
  const OBJ_JOINT = mujoco.mjtObj.mjOBJ_JOINT.value;
  const OBJ_GEOM = mujoco.mjtObj.mjOBJ_GEOM.value;
  for (const name of ENV_NAMES) {
    const model = await loadModel(name);
    const data = new mujoco.MjData(model);
    try {
      mujoco.mj_forward(model, data);
      const g = GEOMETRY[name];
      const id = (type: number, n: string) => {
        const i = mujoco.mj_name2id(model, type, n);
        assert.ok(i >= 0, `${name}: no ${n}`);
        return i;
      };
      const xpos = data.xpos as Float64Array;
      for (const [b, p] of Object.entries(g.bodies)) {
        const i = id(OBJ_BODY, b);
        assertAllClose(xpos.subarray(3 * i, 3 * i + 3), p, 1e-12, `${name} body ${b}`);
      }
      const xanchor = data.xanchor as Float64Array;
      const xaxis = data.xaxis as Float64Array;
      for (const [j, [anchor, axis]] of Object.entries(g.joints)) {
        const i = id(OBJ_JOINT, j);
        assertAllClose(xanchor.subarray(3 * i, 3 * i + 3), anchor, 1e-12, `${name} joint ${j} anchor`);
        assertAllClose(xaxis.subarray(3 * i, 3 * i + 3), axis, 1e-12, `${name} joint ${j} axis`);
      }
      assert.equal(Object.keys(g.capsules).length + 1, model.ngeom, `${name}: capsules + floor`);
      const gxpos = data.geom_xpos as Float64Array;
      const gxmat = data.geom_xmat as Float64Array;
      const gsize = model.geom_size as Float64Array;
      for (const [c, [radius, a, b]] of Object.entries(g.capsules)) {
        const i = id(OBJ_GEOM, c);
        assert.equal(model.geom_type[i], mujoco.mjtGeom.mjGEOM_CAPSULE.value, `${name} ${c} type`);
        assertClose(gsize[3 * i], radius, 1e-12, `${name} ${c} radius`);
        // The capsule's axis is the z column of geom_xmat; its ends are centre ± half-length · axis.
        const h = gsize[3 * i + 1];
        const ends = [1, -1].map((sgn) =>
          [0, 1, 2].map((k) => gxpos[3 * i + k] + sgn * h * gxmat[9 * i + 3 * k + 2])
        );
        const d = (p: number[], q: number[]) => Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
        const err = Math.min(
          Math.max(d(ends[0], a), d(ends[1], b)),
          Math.max(d(ends[0], b), d(ends[1], a)),
        );
        assert.ok(err < 1e-9, `${name} ${c}: ends ${JSON.stringify(ends)} vs ${JSON.stringify([a, b])}`);
      }
    } finally {
      data.delete();
      model.delete();
    }
  }
});

Deno.test("model parameters: joints, actuators, contacts and options as in Gym's XML", async () => {
  const mujoco = await loadMujoco();
  const deg = Math.PI / 180;
  const read = async (name: EnvName) => {
    const m = await loadModel(name);
    const opt = m.opt;
    const out = {
      integrator: opt.integrator as number,
      timestep: opt.timestep as number,
      qpos0: Array.from(m.qpos0 as Float64Array),
      range: Array.from(m.jnt_range as Float64Array),
      stiffness: Array.from(m.jnt_stiffness as Float64Array),
      damping: Array.from(m.dof_damping as Float64Array),
      armature: Array.from(m.dof_armature as Float64Array),
      gear: Array.from({ length: m.nu }, (_, j) => (m.actuator_gear as Float64Array)[6 * j]),
      friction: Array.from({ length: m.ngeom }, (_, j) => (m.geom_friction as Float64Array)[3 * j]),
      condim: Array.from(m.geom_condim as Int32Array),
      conaffinity: Array.from(m.geom_conaffinity as Int32Array),
      margin: Array.from(m.geom_margin as Float64Array),
    };
    opt.delete();
    m.delete();
    return out;
  };
  const RK4 = mujoco.mjtIntegrator.mjINT_RK4.value;
  const EULER = mujoco.mjtIntegrator.mjINT_EULER.value;

  const h = await read("hopper");
  assert.deepEqual([h.integrator, h.timestep], [RK4, 0.002]);
  assert.deepEqual(h.qpos0, [0, 1.25, 0, 0, 0, 0], "rootz ref 1.25");
  assertAllClose(
    h.range.slice(6),
    [-150 * deg, 0, -150 * deg, 0, -45 * deg, 45 * deg],
    1e-12,
    "hopper ranges",
  );
  assert.deepEqual(h.damping, [0, 0, 0, 1, 1, 1]);
  assert.deepEqual(h.armature, [0, 0, 0, 1, 1, 1]);
  assert.deepEqual(h.gear, [200, 200, 200]);
  assert.deepEqual(h.friction, [1, 0.9, 0.9, 0.9, 2]);
  assert.deepEqual(h.condim, [3, 1, 1, 1, 1]);
  assert.deepEqual(h.conaffinity, [1, 1, 1, 1, 1], "hopper body geoms also collide with each other");
  assert.ok(mujoco.mj_version() >= MARGIN_SUM_VERSION, "this check assumes an engine that sums margins");
  assert.deepEqual(
    h.margin,
    [0.0005, 0.0005, 0.0005, 0.0005, 0.0005],
    "Gym's 0.001 per geom, halved because MuJoCo >= 3.5 sums a pair's margins (adaptContactMargins)",
  );

  const w = await read("walker2d");
  assert.deepEqual([w.integrator, w.timestep], [RK4, 0.002]);
  assert.deepEqual(w.qpos0, [0, 1.25, 0, 0, 0, 0, 0, 0, 0]);
  const legRange = [-150 * deg, 0, -150 * deg, 0, -45 * deg, 45 * deg];
  assertAllClose(w.range.slice(6), [...legRange, ...legRange], 1e-12, "walker ranges");
  assert.deepEqual(w.damping, [0, 0, 0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]);
  assert.deepEqual(w.armature, [0, 0, 0, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01]);
  assert.deepEqual(w.gear, [100, 100, 100, 100, 100, 100]);
  assert.deepEqual(w.friction, [0.7, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 1.9]);
  assert.deepEqual(w.conaffinity, [1, 0, 0, 0, 0, 0, 0, 0]);

  const c = await read("halfcheetah");
  assert.deepEqual([c.integrator, c.timestep], [EULER, 0.01]);
  assert.deepEqual(c.qpos0, zeros(9));
  assertAllClose(
    c.range.slice(6),
    [-0.52, 1.05, -0.785, 0.785, -0.4, 0.785, -1, 0.7, -1.2, 0.87, -0.5, 0.5],
    1e-12,
    "cheetah ranges",
  );
  assert.deepEqual(c.stiffness, [0, 0, 0, 240, 180, 120, 180, 120, 60]);
  assert.deepEqual(c.damping, [0, 0, 0, 6, 4.5, 3, 4.5, 3, 1.5]);
  assert.deepEqual(c.armature, [0, 0, 0, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]);
  assert.deepEqual(c.gear, [120, 90, 60, 120, 60, 30]);
  assert.deepEqual(c.friction, new Array(9).fill(0.4));
  assert.deepEqual(c.conaffinity, [1, 0, 0, 0, 0, 0, 0, 0, 0]);
});

/**
 * Mass of a capsule of radius r and straight length L at density 1000, as MuJoCo ≤ 2.1.0
 * (mujoco-py, which generated D4RL) computed it: a cylinder of length L + r. Principal inertias
 * [I_perp, I_perp, I_axis] of that cylinder.
 */
function legacyCapsule(r: number, L: number): { m: number; inertia: [number, number, number] } {
  const H = L + r;
  const m = 1000 * Math.PI * r * r * H;
  const perp = (m * (3 * r * r + H * H)) / 12;
  return { m, inertia: [perp, perp, (m * r * r) / 2] };
}
/** Exact capsule mass (MuJoCo ≥ 2.1.1): cylinder plus a full sphere. */
const exactCapsuleMass = (r: number, L: number) => 1000 * Math.PI * (r * r * L + (4 / 3) * r ** 3);

const sorted = (v: ArrayLike<number>) => Array.from(v).sort((a, b) => a - b);

Deno.test("masses and inertias: Gym's geometry at density 1000 with mujoco-py's capsule rule", async () => {
  const bodyProps = async (name: EnvName) => {
    const m = await loadModel(name);
    const mass = Array.from(m.body_mass as Float64Array);
    const inertia = Array.from(m.body_inertia as Float64Array);
    m.delete();
    return { mass, inertia: (i: number) => sorted(inertia.slice(3 * i, 3 * i + 3)) };
  };

  // Hopper bodies (torso, thigh, leg, foot): capsules (r, L) from Gym's fromto.
  const hopperCaps: [number, number][] = [[0.05, 0.4], [0.05, 0.45], [0.04, 0.5], [0.06, 0.39]];
  const h = await bodyProps("hopper");
  // model.body_mass of Hopper-v3 under mujoco-py, as printed by countless domain-randomization repos.
  assertAllClose(h.mass, [0, 3.53429174, 3.92699082, 2.71433605, 5.0893801], 1e-8, "hopper mass (mujoco-py)");
  hopperCaps.forEach(([r, L], k) => {
    const lc = legacyCapsule(r, L);
    assertClose(h.mass[k + 1], lc.m, 1e-9, `hopper mass ${k}`);
    assertAllClose(h.inertia(k + 1), sorted(lc.inertia), 1e-9, `hopper inertia ${k}`);
  });
  const hopperTotal = h.mass.reduce((s, x) => s + x, 0);
  assertClose(hopperTotal, 15.2649987, 1e-6, "hopper total");
  // For reference: exact capsules would weigh 15.820 kg, 3.6% more (this is what MuJoCo 3 would
  // compute from Gym's geoms with inertiafromgeom) — the reason the XML carries explicit inertials.
  const exactTotal = hopperCaps.reduce((s, [r, L]) => s + exactCapsuleMass(r, L), 0);
  assertClose(exactTotal, 15.8201, 1e-3, "hopper exact-capsule total");

  // Walker2d: torso, (thigh, leg, foot) × 2.
  const walkerCaps: [number, number][] = [
    [0.05, 0.4],
    [0.05, 0.45],
    [0.04, 0.5],
    [0.06, 0.2],
    [0.05, 0.45],
    [0.04, 0.5],
    [0.06, 0.2],
  ];
  const w = await bodyProps("walker2d");
  walkerCaps.forEach(([r, L], k) => {
    const lc = legacyCapsule(r, L);
    assertClose(w.mass[k + 1], lc.m, 1e-9, `walker mass ${k}`);
    assertAllClose(w.inertia(k + 1), sorted(lc.inertia), 1e-9, `walker inertia ${k}`);
  });
  assertClose(w.mass.reduce((s, x) => s + x, 0), 22.698007, 1e-6, "walker total");

  // HalfCheetah: settotalmass 14 rescales the legacy masses; mujoco-py's body_mass of HalfCheetah-v3:
  const c = await bodyProps("halfcheetah");
  assertAllClose(
    c.mass,
    [0, 6.36031332, 1.53524804, 1.58093995, 1.0691906, 1.42558747, 1.17885117, 0.84986945],
    1e-8,
    "cheetah mass (mujoco-py)",
  );
  assertClose(c.mass.reduce((s, x) => s + x, 0), 14, 1e-12, "cheetah total");
  // Single-capsule bodies: principal inertias are the legacy cylinder's, scaled by 14 / unscaled total.
  const r = 0.046;
  const lengths = {
    torso: 1.0,
    head: 0.3,
    bthigh: 0.29,
    bshin: 0.3,
    bfoot: 0.188,
    fthigh: 0.266,
    fshin: 0.212,
    ffoot: 0.14,
  };
  const unscaled = Object.values(lengths).reduce((s, L) => s + legacyCapsule(r, L).m, 0);
  const scale = 14 / unscaled;
  (["bthigh", "bshin", "bfoot", "fthigh", "fshin", "ffoot"] as const).forEach((b, k) => {
    const lc = legacyCapsule(r, lengths[b]);
    assertAllClose(c.inertia(k + 2), sorted(lc.inertia.map((x) => x * scale)), 1e-9, `cheetah inertia ${b}`);
  });
  // Torso = torso capsule (along x, centre 0) + head capsule (axis (sin .87, 0, cos .87), centre
  // (.6, 0, .1)): parallel-axis sum in the x–z plane, then the 2×2 eigenvalues plus I_yy.
  const parts = [
    { ...legacyCapsule(r, 1.0), c: [0, 0], a: [1, 0] },
    { ...legacyCapsule(r, 0.3), c: [0.6, 0.1], a: [Math.sin(0.87), Math.cos(0.87)] },
  ];
  const M = parts[0].m + parts[1].m;
  const com = [0, 1].map((k) => (parts[0].m * parts[0].c[k] + parts[1].m * parts[1].c[k]) / M);
  let ixx = 0, izz = 0, ixz = 0, iyy = 0;
  for (const p of parts) {
    const [perp, , ax] = p.inertia;
    const dx = p.c[0] - com[0], dz = p.c[1] - com[1];
    ixx += perp + (ax - perp) * p.a[0] ** 2 + p.m * dz * dz;
    izz += perp + (ax - perp) * p.a[1] ** 2 + p.m * dx * dx;
    ixz += (ax - perp) * p.a[0] * p.a[1] - p.m * dx * dz;
    iyy += perp + p.m * (dx * dx + dz * dz);
  }
  const mean = (ixx + izz) / 2, rad = Math.hypot((ixx - izz) / 2, ixz);
  assertAllClose(
    c.inertia(1),
    sorted([mean - rad, mean + rad, iyy].map((x) => x * scale)),
    1e-9,
    "cheetah torso",
  );
});

Deno.test("recorded masses: v3 specs hold the legacy capsule rule, v5 specs exact capsules; models match them", async () => {
  for (const env of ALL_ENV_NAMES) {
    const m = await loadModel(env);
    const mass = Array.from(m.body_mass as Float64Array);
    m.delete();
    assertAllClose(mass.slice(1), ENV_SPECS[env].bodyMasses.map(([, kg]) => kg), 1e-9, `${env} masses`);
  }
  const kg = (env: EnvName) => ENV_SPECS[env].bodyMasses.map(([, m]) => m);
  const hopperCaps: [number, number][] = [[0.05, 0.4], [0.05, 0.45], [0.04, 0.5], [0.06, 0.39]];
  const walkerCaps: [number, number][] = [[0.05, 0.4], [0.05, 0.45], [0.04, 0.5], [0.06, 0.2]];
  const walkerOrder = [0, 1, 2, 3, 1, 2, 3];
  assertAllClose(kg("hopper"), hopperCaps.map(([r, L]) => legacyCapsule(r, L).m), 1e-12, "hopper");
  assertAllClose(kg("hopper-v5"), hopperCaps.map(([r, L]) => exactCapsuleMass(r, L)), 1e-12, "hopper-v5");
  assertAllClose(kg("walker2d"), walkerOrder.map((k) => legacyCapsule(...walkerCaps[k]).m), 1e-12, "walker");
  assertAllClose(
    kg("walker2d-v5"),
    walkerOrder.map((k) => exactCapsuleMass(...walkerCaps[k])),
    1e-12,
    "walker-v5",
  );
  // HalfCheetah: capsules r 0.046 (torso 1.0 + head 0.3 in one body), rescaled together to 14 kg.
  const cheetah = [[1.0, 0.3], [0.29], [0.3], [0.188], [0.266], [0.212], [0.14]];
  const rules = [
    ["halfcheetah", (L: number) => legacyCapsule(0.046, L).m],
    ["halfcheetah-v5", (L: number) => exactCapsuleMass(0.046, L)],
  ] as const;
  for (const [env, mass] of rules) {
    const raw = cheetah.map((lengths) => lengths.reduce((s, L) => s + mass(L), 0));
    const total = raw.reduce((s, m) => s + m, 0);
    assertAllClose(kg(env), raw.map((m) => (m * 14) / total), 1e-12, env);
  }
});

Deno.test("bad model files fail at load with one line: rejected by MuJoCo 3, or masses off the recorded ones", async () => {
  const xml = await readModelXml("hopper");
  // Gym's own files use global coordinates, which MuJoCo 3 refuses.
  const globalCoordinates = xml.replace(
    '<compiler angle="degree"',
    '<compiler coordinate="global" angle="degree"',
  );
  assert.notEqual(globalCoordinates, xml);
  await assertFails(compileModel("hopper", globalCoordinates, "gym-hopper.xml"), "input", [
    "gym-hopper.xml",
    "rejects the model",
    "global coordinates",
  ]);
  // A foot 1 g heavier than recorded.
  const heavier = xml.replace('mass="5.08938009882"', 'mass="5.09038009882"');
  assert.notEqual(heavier, xml);
  await assertFails(compileModel("hopper", heavier), "input", [
    'body "foot"',
    "5.09038009882",
    String(ENV_SPECS.hopper.bodyMasses[3][1]),
  ]);
  // The foot's explicit inertial dropped: MuJoCo 3 derives it from the geom with the exact capsule
  // rule (cylinder plus a full sphere), 4% heavier than mujoco-py's cylinder of length L + r.
  const fromGeom = xml.replace(/<inertial pos="-0\.065 0 0\.1"[^>]*\/>/, "");
  assert.notEqual(fromGeom, xml);
  const failure = await assertFails(compileModel("hopper", fromGeom), "input", ['body "foot"', "has mass"]);
  const exact = 1000 * Math.PI * (0.06 ** 2 * 0.39 + (4 / 3) * 0.06 ** 3);
  assert.ok(failure.error.message.includes(String(exact).slice(0, 8)), failure.error.message);
  // Differing margins: no per-geom value gives both engines' pair margins.
  const floorMargin = xml.replace('<geom name="floor"', '<geom name="floor" margin="0.002"');
  assert.notEqual(floorMargin, xml);
  await assertFails(compileModel("hopper", floorMargin), "input", [
    "different contact margins",
    "0.002, 0.001",
  ]);
  // Still loads as shipped.
  (await compileModel("hopper", xml)).delete();
});
