/**
 * Gymnasium v5 environments beside the v3 ones: the same constants except what Gymnasium's v5
 * sources change (model file, exact capsule inertia, Walker2d's right-foot friction, no healthy reward
 * on the terminating step, no D4RL reference), checked against independent numbers.
 */
import assert from "node:assert/strict";
import { loadModel, LocomotionEnv } from "../envs/locomotion.ts";
import {
  ALL_ENV_NAMES,
  type D4rlEnvName,
  ENV_NAMES,
  ENV_SPECS,
  envBody,
  envOfGymId,
  normalizedScore,
  V5_ENV_NAMES,
} from "../envs/specs.ts";

const close = (a: number, b: number, tol: number, what: string) =>
  assert.ok(Math.abs(a - b) <= tol, `${what}: ${a} vs ${b}`);

/** MuJoCo >= 2.1.2's capsule at density 1000: a cylinder of length L plus a sphere of radius r. */
const exactCapsuleMass = (r: number, L: number) => 1000 * (Math.PI * r * r * L + (4 / 3) * Math.PI * r ** 3);

Deno.test("v5 specs are v3's but for the model, the healthy-reward rule and the reference; ids map both ways", () => {
  for (const v5 of V5_ENV_NAMES) {
    const spec = ENV_SPECS[v5], v3 = ENV_SPECS[envBody(v5)];
    const {
      name,
      gymId,
      xmlFile,
      healthyRewardOnlyWhenHealthy,
      refMinScore,
      refMaxScore,
      bodyMasses,
      ...rest
    } = spec;
    const {
      name: _n,
      gymId: _g,
      xmlFile: _x,
      refMinScore: _a,
      refMaxScore: _b,
      bodyMasses: v3Masses,
      ...restV3
    } = v3;
    assert.deepEqual(rest, restV3, v5);
    // The same bodies; their masses differ (exact capsules, checked in envs_test.ts).
    assert.deepEqual(bodyMasses.map(([body]) => body), v3Masses.map(([body]) => body), v5);
    assert.equal(name, v5);
    assert.equal(gymId, v3.gymId.replace("-v3", "-v5"));
    assert.match(xmlFile, /_v5\.xml$/);
    assert.equal(healthyRewardOnlyWhenHealthy, v3.healthyReward !== 0, v5);
    assert.equal(
      normalizedScore(v5, 1234.5),
      1234.5,
      "without a dataset reference a v5 score is the raw return",
    );
    assert.deepEqual([refMinScore, refMaxScore], [0, 100]);
    assert.equal(envOfGymId(gymId), v5);
    assert.equal(envOfGymId(v3.gymId), envBody(v5));
  }
  assert.equal(envOfGymId("Hopper-v4"), undefined);
  assert.equal(envOfGymId("Ant-v5"), undefined);
  assert.deepEqual(ALL_ENV_NAMES, [...ENV_NAMES, ...V5_ENV_NAMES]);
});

Deno.test("v5 models: v3's geometry, joints and actuators; exact capsule masses; Walker2d's right foot friction 1.9", async () => {
  for (const body of ENV_NAMES) {
    const v3 = await loadModel(body), v5 = await loadModel(`${body}-v5`);
    try {
      for (
        const field of [
          "geom_size",
          "geom_pos",
          "geom_quat",
          "geom_margin",
          "body_pos",
          "jnt_range",
          "jnt_pos",
          "dof_damping",
          "dof_armature",
          "actuator_gear",
          "actuator_ctrlrange",
        ] as const
      ) {
        assert.deepEqual(
          Array.from(v5[field] as Float64Array),
          Array.from(v3[field] as Float64Array),
          `${body} ${field}`,
        );
      }
      assert.equal(v5.opt.timestep, v3.opt.timestep);
      assert.equal(v5.opt.integrator, v3.opt.integrator);
      const friction3 = Array.from(v3.geom_friction as Float64Array).filter((_, i) => i % 3 === 0);
      const friction5 = Array.from(v5.geom_friction as Float64Array).filter((_, i) => i % 3 === 0);
      if (body === "walker2d") {
        const foot = 4; // floor, torso, thigh, leg, foot (right), then the left leg
        assert.equal(friction3[foot], 0.9);
        assert.equal(friction5[foot], 1.9);
        assert.deepEqual(friction5.filter((_, i) => i !== foot), friction3.filter((_, i) => i !== foot));
        assert.equal(friction5.at(-1), 1.9, "the left foot's, as in v3");
      } else {
        assert.deepEqual(friction5, friction3, `${body} frictions`);
      }
      const mass = Array.from(v5.body_mass as Float64Array);
      if (body === "hopper") {
        // Capsules (radius, straight length) of torso, thigh, leg and foot, from Gymnasium's hopper.xml.
        const caps: [number, number][] = [[0.05, 0.4], [0.05, 0.45], [0.04, 0.5], [0.06, 0.39]];
        caps.forEach(([r, L], k) => close(mass[k + 1], exactCapsuleMass(r, L), 1e-9, `hopper-v5 mass ${k}`));
      } else if (body === "walker2d") {
        const leg: [number, number][] = [[0.05, 0.45], [0.04, 0.5], [0.06, 0.2]];
        const caps = [[0.05, 0.4] as [number, number], ...leg, ...leg];
        caps.forEach(([r, L], k) =>
          close(mass[k + 1], exactCapsuleMass(r, L), 1e-9, `walker2d-v5 mass ${k}`)
        );
      } else {
        close(mass.reduce((a, b) => a + b, 0), 14, 1e-9, "halfcheetah-v5 total mass (settotalmass)");
        // Exact capsules shift mass between bodies: the bodies differ from v3's, the total does not.
        const v3mass = Array.from(v3.body_mass as Float64Array);
        assert.ok(Math.abs(mass[1] - v3mass[1]) > 0.05, "torso mass differs from the legacy rule's");
      }
    } finally {
      v3.delete();
      v5.delete();
    }
  }
});

Deno.test("v5 pays no healthy reward on the terminating step, v3 does; both pay it on healthy steps", async () => {
  const cases: [D4rlEnvName, number[], number[]][] = [
    ["hopper", [0, 1.25, 0, 0, 0, 0], [0, 0.5, 0, 0, 0, 0]],
    ["walker2d", [0, 1.25, 0, 0, 0, 0, 0, 0, 0], [0, 0.5, 0, 0, 0, 0, 0, 0, 0]],
  ];
  for (const [body, healthy, fallen] of cases) {
    for (const env of [body, `${body}-v5`] as const) {
      const e = await LocomotionEnv.create(env, { seed: 0 });
      try {
        const spec = e.spec;
        const zeros = new Array(spec.nv).fill(0);
        const action = new Float32Array(spec.actDim);
        const survive = (state: number[]) => {
          e.reset();
          e.setState(state, zeros);
          const x0 = e.getQpos()[0];
          const r = e.step(action);
          return { healthy: r.reward - (e.getQpos()[0] - x0) / spec.dt, terminated: r.terminated };
        };
        const up = survive(healthy);
        assert.equal(up.terminated, false, `${env} upright`);
        close(up.healthy, 1, 1e-9, `${env} healthy step`);
        const down = survive(fallen);
        assert.equal(down.terminated, true, `${env} fallen`);
        close(down.healthy, env.endsWith("-v5") ? 0 : 1, 1e-9, `${env} terminating step`);
      } finally {
        e.dispose();
      }
    }
  }
});

Deno.test("v5 environments simulate their own models: the same actions from the same state move v3 and v5 apart", async () => {
  for (const body of ENV_NAMES) {
    const run = async (env: typeof body | `${typeof body}-v5`) => {
      const e = await LocomotionEnv.create(env, { seed: 3 });
      try {
        e.reset();
        const spec = e.spec;
        e.setState(
          Array.from(e.getQpos()).map((_, i) => i === 1 ? e.getQpos()[1] : 0),
          new Array(spec.nv).fill(0),
        );
        const a = new Float32Array(spec.actDim).fill(0.5);
        for (let t = 0; t < 20; t++) e.step(a);
        return Array.from(e.getQpos());
      } finally {
        e.dispose();
      }
    };
    const q3 = await run(body), q5 = await run(`${body}-v5`);
    const gap = Math.max(...q3.map((q, i) => Math.abs(q - q5[i])));
    assert.ok(gap > 1e-4, `${body}: v3 and v5 end ${gap} apart`);
  }
});
