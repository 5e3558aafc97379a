/**
 * Static descriptions of the three D4RL locomotion environments (Gym's Hopper-v3, HalfCheetah-v3
 * and Walker2d-v3) and of Gymnasium's v5 versions of them (Minari's datasets; the differences are
 * listed before their specs): sizes, timing, reward and termination constants, D4RL reference
 * scores, the health test and the observation layout. Nothing here needs MuJoCo, so stages, reports and
 * commands that only need the specs import this module and not the physics
 * (`./locomotion.ts`).
 * @module
 */

// ---------------------------------------------------------------------------------------------
// Specs
// ---------------------------------------------------------------------------------------------

/** The three D4RL locomotion environments (Gym v3), also the bodies of every other version. */
export type D4rlEnvName = "hopper" | "halfcheetah" | "walker2d";

/** Gymnasium's v5 versions of the three (Minari's `mujoco/*` datasets). */
export type V5EnvName = "hopper-v5" | "halfcheetah-v5" | "walker2d-v5";

/** An environment we model: a D4RL (Gym v3) one or a Gymnasium v5 one. */
export type EnvName = D4rlEnvName | V5EnvName;

/** The D4RL environments (Gym v3), in a fixed order: what D4RL files, the collector and Table 1 cover. */
export const ENV_NAMES: readonly D4rlEnvName[] = ["hopper", "halfcheetah", "walker2d"];

/** The Gymnasium v5 environments, in the same order. */
export const V5_ENV_NAMES: readonly V5EnvName[] = ["hopper-v5", "halfcheetah-v5", "walker2d-v5"];

/** Every {@link EnvName}: the D4RL ones, then the v5 ones. */
export const ALL_ENV_NAMES: readonly EnvName[] = [...ENV_NAMES, ...V5_ENV_NAMES];

/** The body an environment simulates, whatever its version (`hopper-v5` → `hopper`). */
export function envBody(env: EnvName): D4rlEnvName {
  return ENV_SPECS[env].body;
}

/** The environment of a Gym/Gymnasium id we model (`Hopper-v3` → `hopper`, `Hopper-v5` → `hopper-v5`). */
export function envOfGymId(gymId: string): EnvName | undefined {
  return ALL_ENV_NAMES.find((e) => ENV_SPECS[e].gymId === gymId);
}

/** Static description of one environment: sizes, timing, reward/termination constants, D4RL scores. */
export interface EnvSpec {
  /** Short name of the environment. */
  readonly name: EnvName;
  /** The body it simulates (the D4RL environment of the same robot). */
  readonly body: D4rlEnvName;
  /** The Gym id whose semantics are reproduced. */
  readonly gymId: string;
  /** Model file, relative to `envs/` (this module's folder). */
  readonly xmlFile: string;
  /** Generalized coordinates / velocities / actuators of the model. */
  readonly nq: number;
  /** Number of generalized velocities (qvel length). */
  readonly nv: number;
  /** obs = [qpos[1:], qvel] so obsDim = nq - 1 + nv. */
  readonly obsDim: number;
  /** Number of actuators, the action dimension. */
  readonly actDim: number;
  /** MuJoCo steps per environment step. */
  readonly frameSkip: number;
  /** MuJoCo timestep (s). */
  readonly timestep: number;
  /** Environment step duration frameSkip · timestep (s), Gym's `dt`. */
  readonly dt: number;
  /** TimeLimit: `truncated` is raised once this many steps have elapsed since reset. */
  readonly horizon: number;
  /** Every action dimension is bounded by [actionLow, actionHigh] (the actuators' ctrlrange). */
  readonly actionLow: number;
  /** Upper bound of every action dimension. */
  readonly actionHigh: number;
  /** Weight of the forward (x) velocity in the reward. */
  readonly forwardRewardWeight: number;
  /** Weight of the control cost, the squared norm of the action. */
  readonly ctrlCostWeight: number;
  /**
   * Paid on every step, including the terminating one (Gym v3: terminate_when_unhealthy=True), unless
   * `healthyRewardOnlyWhenHealthy`.
   */
  readonly healthyReward: number;
  /** Gymnasium v5: the healthy reward is paid only on healthy steps (not on the terminating one). */
  readonly healthyRewardOnlyWhenHealthy?: boolean;
  /** Whether the episode terminates when unhealthy (false: never terminates). */
  readonly terminateWhenUnhealthy: boolean;
  /** Healthy iff zRange[0] < qpos[1] < zRange[1] (strict, as in Gym). */
  readonly healthyZRange: readonly [number, number];
  /** Healthy iff angleRange[0] < qpos[2] < angleRange[1]. */
  readonly healthyAngleRange: readonly [number, number];
  /** Hopper only: healthy iff every entry of (qpos[2:], qvel) is strictly inside this range. */
  readonly healthyStateRange: readonly [number, number] | null;
  /** Observed velocities are clipped to ±this (Infinity: no clipping). */
  readonly qvelClip: number;
  /** Reset noise: qpos += U(-s, s); qvel += U(-s, s) or s·N(0, 1) (see `qvelNoise`). */
  readonly resetNoiseScale: number;
  /** Distribution of the qvel reset noise. */
  readonly qvelNoise: "uniform" | "normal";
  /**
   * D4RL reference returns (random, expert) behind the normalized score. The v5 environments have no
   * D4RL reference: 0 and 100, so that without a dataset's own reference a score is the raw return.
   */
  readonly refMinScore: number;
  /** D4RL expert reference return (normalized score 100); 100 for v5 (see `refMinScore`). */
  readonly refMaxScore: number;
  /**
   * The body masses (kg) of the engine the environment's data came from, world excluded, by body
   * name in model order. v3: mujoco-py's `body_mass`, Gym's geometry at density 1000 with the capsule
   * rule of MuJoCo <= 2.1.0 (a cylinder of length L + r; see the XML headers). v5: MuJoCo >= 2.1.1's
   * exact capsules. A compiled model whose masses differ by more than {@link MASS_TOLERANCE} is
   * refused at load.
   */
  readonly bodyMasses: readonly (readonly [body: string, mass: number])[];
}

/** Largest difference (kg) allowed between a compiled body mass and its recorded mujoco-py mass. */
export const MASS_TOLERANCE = 1e-6;

/** Legacy capsule masses shared by Hopper and Walker2d (r, L from Gym's XML: 1000·π·r²·(L + r)). */
const TORSO_MASS = 3.5342917352885177; // r 0.05, L 0.4
const THIGH_MASS = 3.926990816987242; // r 0.05, L 0.45
const LEG_MASS = 2.7143360527015816; // r 0.04, L 0.5

/** Hopper-v3 (gym/envs/mujoco/hopper_v3.py): 4 × 2 ms RK4 steps, 3 motors. */
const HOPPER: EnvSpec = {
  name: "hopper",
  body: "hopper",
  gymId: "Hopper-v3",
  xmlFile: "./models/hopper.xml",
  nq: 6,
  nv: 6,
  obsDim: 11,
  actDim: 3,
  frameSkip: 4,
  timestep: 0.002,
  dt: 0.002 * 4,
  horizon: 1000,
  actionLow: -1,
  actionHigh: 1,
  forwardRewardWeight: 1,
  ctrlCostWeight: 1e-3,
  healthyReward: 1,
  terminateWhenUnhealthy: true,
  healthyZRange: [0.7, Infinity],
  healthyAngleRange: [-0.2, 0.2],
  healthyStateRange: [-100, 100],
  qvelClip: 10,
  resetNoiseScale: 5e-3,
  qvelNoise: "uniform",
  refMinScore: -20.272305,
  refMaxScore: 3234.3,
  bodyMasses: [
    ["torso", TORSO_MASS],
    ["thigh", THIGH_MASS],
    ["leg", LEG_MASS],
    ["foot", 5.0893800988154645], // r 0.06, L 0.39
  ],
};

/** HalfCheetah-v3 (gym/envs/mujoco/half_cheetah_v3.py): 5 × 10 ms Euler steps, 6 motors, never terminates. */
const HALFCHEETAH: EnvSpec = {
  name: "halfcheetah",
  body: "halfcheetah",
  gymId: "HalfCheetah-v3",
  xmlFile: "./models/half_cheetah.xml",
  nq: 9,
  nv: 9,
  obsDim: 17,
  actDim: 6,
  frameSkip: 5,
  timestep: 0.01,
  dt: 0.01 * 5,
  horizon: 1000,
  actionLow: -1,
  actionHigh: 1,
  forwardRewardWeight: 1,
  ctrlCostWeight: 0.1,
  healthyReward: 0,
  terminateWhenUnhealthy: false,
  healthyZRange: [-Infinity, Infinity],
  healthyAngleRange: [-Infinity, Infinity],
  healthyStateRange: null,
  qvelClip: Infinity,
  resetNoiseScale: 0.1,
  qvelNoise: "normal",
  refMinScore: -280.178953,
  refMaxScore: 12135.0,
  // Capsules r 0.046 of lengths torso 1.0 + head 0.3, bthigh .29, bshin .3, bfoot .188, fthigh
  // .266, fshin .212, ffoot .14, rescaled together to Gym's settotalmass 14 kg.
  bodyMasses: [
    ["torso", 6.360313315926893],
    ["bthigh", 1.5352480417754566],
    ["bshin", 1.5809399477806787],
    ["bfoot", 1.0691906005221932],
    ["fthigh", 1.4255874673629243],
    ["fshin", 1.178851174934726],
    ["ffoot", 0.8498694516971279],
  ],
};

/** Walker2d-v3 (gym/envs/mujoco/walker2d_v3.py): 4 × 2 ms RK4 steps, 6 motors. */
const WALKER2D: EnvSpec = {
  name: "walker2d",
  body: "walker2d",
  gymId: "Walker2d-v3",
  xmlFile: "./models/walker2d.xml",
  nq: 9,
  nv: 9,
  obsDim: 17,
  actDim: 6,
  frameSkip: 4,
  timestep: 0.002,
  dt: 0.002 * 4,
  horizon: 1000,
  actionLow: -1,
  actionHigh: 1,
  forwardRewardWeight: 1,
  ctrlCostWeight: 1e-3,
  healthyReward: 1,
  terminateWhenUnhealthy: true,
  healthyZRange: [0.8, 2.0],
  healthyAngleRange: [-1, 1],
  healthyStateRange: null,
  qvelClip: 10,
  resetNoiseScale: 5e-3,
  qvelNoise: "uniform",
  refMinScore: 1.629008,
  refMaxScore: 4592.3,
  bodyMasses: [
    ["torso", TORSO_MASS],
    ["thigh", THIGH_MASS],
    ["leg", LEG_MASS],
    ["foot", 2.940530723760046], // r 0.06, L 0.2
    ["thigh_left", THIGH_MASS],
    ["leg_left", LEG_MASS],
    ["foot_left", 2.940530723760046],
  ],
};

// ---------------------------------------------------------------------------------------------
// Gymnasium v5
// ---------------------------------------------------------------------------------------------
//
// Every difference between Gymnasium's v5 environments and the Gym v3 ones above, read from
// Gymnasium (Farama-Foundation/Gymnasium, commit 3f0476a8): gymnasium/envs/mujoco/{hopper,
// half_cheetah,walker2d}_v5.py (constructor defaults, `healthy_reward`, `is_healthy`, `_get_obs`,
// `step`, `reset_model`, the "Version History" of each docstring), mujoco_env.py (stepping),
// gymnasium/envs/__init__.py (registration) and assets/{hopper,half_cheetah,walker2d_v5}.xml.
//
// - Model files. Hopper: assets/hopper.xml, rewritten in local coordinates ("modified to not require
//   coordinate=global") with v3's bodies, joints, ranges, gears, frictions, margin and options.
//   HalfCheetah: assets/half_cheetah.xml, v3's file. Walker2d: assets/walker2d_v5.xml, v3's model
//   with the right foot's friction 0.9 → 1.9 like the left foot's (walker2d_v5.py history, Gymnasium
//   issue #477). Ours: models/{hopper,half_cheetah,walker2d}_v5.xml.
// - Inertia. v5 needs MuJoCo >= 2.3.3 (history: "Minimum mujoco version is now 2.3.3"), whose
//   inertiafromgeom integrates capsule caps exactly; v3 ran on mujoco-py (MuJoCo <= 2.1.1), whose
//   cylinder approximation our v3 models keep as explicit inertials. Body masses: Hopper 3.665,
//   4.058, 2.781, 5.316 kg (v3: 3.534, 3.927, 2.714, 5.089); HalfCheetah rescaled to 14 kg either way.
// - Reward. Hopper and Walker2d: `healthy_reward` is `is_healthy * healthy_reward`, so the
//   terminating step earns no healthy reward (v3: `float(is_healthy or terminate_when_unhealthy)`,
//   paid on every step; history: "Fixed bug: healthy_reward was given on every step", issue #526).
//   Forward and control terms unchanged. HalfCheetah unchanged (forward − 0.1·‖a‖²).
// - Healthy ranges and termination: unchanged (Hopper z > 0.7, |angle| < 0.2, state in ±100;
//   Walker2d 0.8 < z < 2, −1 < angle < 1; terminated = not healthy).
// - Observations: unchanged (qpos[1:] and qvel, velocities clipped to ±10 for Hopper and Walker2d,
//   not for HalfCheetah), float64 in Gymnasium, float32 here as for v3.
// - Reset noise: unchanged (uniform ±5e-3 on qpos and qvel; HalfCheetah qpos uniform ±0.1, qvel
//   0.1·N(0, 1)).
// - Defaults: frame_skip 4 / 5 / 4 and timesteps as v3; max_episode_steps 1000 (registration).
//   New constructor arguments (xml_file, frame_skip, default_camera_config) and the non-empty reset
//   `info`, `observation_structure` and reward terms in `info` change nothing computed here.
// - Stepping: `mj_step(model, data, nstep=frame_skip)` then `mj_rnePostConstraint`, the same state
//   trajectory as v3's `frame_skip` calls of `sim.step()`.
// - Normalized scores: Gymnasium has no D4RL reference; Minari's datasets carry their own
//   (`ref_min_score`, `ref_max_score` in metadata.json), which the load stage passes to every
//   evaluation. Without them a v5 score is the raw return.

/**
 * v5 over a v3 spec: the model file, the healthy-reward rule, the (absent) D4RL reference and the body
 * masses, which are MuJoCo >= 2.1.1's exact capsules here (cylinder plus a full sphere,
 * 1000·π·(r²·L + 4/3·r³)) in the order and with the names of the v3 bodies.
 */
function v5(
  base: EnvSpec,
  name: V5EnvName,
  gymId: string,
  xmlFile: string,
  masses: readonly number[],
): EnvSpec {
  return {
    ...base,
    name,
    gymId,
    xmlFile,
    healthyRewardOnlyWhenHealthy: base.healthyReward !== 0,
    refMinScore: 0,
    refMaxScore: 100,
    bodyMasses: base.bodyMasses.map(([body], k) => [body, masses[k]] as const),
  };
}

/** Exact capsule masses shared by Hopper-v5 and Walker2d-v5 (torso, thigh, leg; r, L as in v3). */
const V5_TORSO_THIGH_LEG = [3.6651914291880927, 4.057890510886817, 2.7813566959781633];
/** Walker2d-v5's foot (r 0.06, L 0.2). */
const V5_WALKER_FOOT = 3.1667253948185112;

/** Hopper-v5 (gymnasium/envs/mujoco/hopper_v5.py): v3 with exact capsule inertia and the healthy-reward fix. */
const HOPPER_V5 = v5(HOPPER, "hopper-v5", "Hopper-v5", "./models/hopper_v5.xml", [
  ...V5_TORSO_THIGH_LEG,
  5.31557476987393, // foot: r 0.06, L 0.39
]);
/** HalfCheetah-v5 (half_cheetah_v5.py): v3 with exact capsule inertia (rescaled to 14 kg together). */
const HALFCHEETAH_V5 = v5(HALFCHEETAH, "halfcheetah-v5", "HalfCheetah-v5", "./models/half_cheetah_v5.xml", [
  6.25020920502092,
  1.5435146443514645,
  1.5874476987447697,
  1.095397489539749,
  1.4380753138075315,
  1.2008368200836819,
  0.8845188284518829,
]);
/** Walker2d-v5 (walker2d_v5.py): v3 with exact capsule inertia, right-foot friction 1.9, the healthy-reward fix. */
const WALKER2D_V5 = v5(WALKER2D, "walker2d-v5", "Walker2d-v5", "./models/walker2d_v5.xml", [
  ...V5_TORSO_THIGH_LEG,
  V5_WALKER_FOOT,
  ...V5_TORSO_THIGH_LEG.slice(1),
  V5_WALKER_FOOT,
]);

/** Spec of every environment, by name. */
export const ENV_SPECS: Readonly<Record<EnvName, EnvSpec>> = {
  hopper: HOPPER,
  halfcheetah: HALFCHEETAH,
  walker2d: WALKER2D,
  "hopper-v5": HOPPER_V5,
  "halfcheetah-v5": HALFCHEETAH_V5,
  "walker2d-v5": WALKER2D_V5,
};

/**
 * D4RL normalized score in percent: 100 · (return − random) / (expert − random)
 * (D4RL's `get_normalized_score` times 100, as reported in papers).
 */
export function normalizedScore(env: EnvName, episodeReturn: number): number {
  const { refMinScore, refMaxScore } = ENV_SPECS[env];
  return (100 * (episodeReturn - refMinScore)) / (refMaxScore - refMinScore);
}

// ---------------------------------------------------------------------------------------------
// Gym v3 semantics, written out
// ---------------------------------------------------------------------------------------------

/**
 * Gym v3 `is_healthy`. Comparisons are strict and written so that NaN counts as unhealthy
 * (as NumPy's comparisons do). For Hopper, `state_vector()[2:]` is (qpos[2:], qvel) with the
 * raw, unclipped velocities.
 */
export function isHealthy(spec: EnvSpec, qpos: ArrayLike<number>, qvel: ArrayLike<number>): boolean {
  const z = qpos[1];
  const angle = qpos[2];
  const [zMin, zMax] = spec.healthyZRange;
  const [angleMin, angleMax] = spec.healthyAngleRange;
  if (!(zMin < z && z < zMax)) return false;
  if (!(angleMin < angle && angle < angleMax)) return false;
  if (spec.healthyStateRange !== null) {
    const [lo, hi] = spec.healthyStateRange;
    for (let i = 2; i < spec.nq; i++) if (!(lo < qpos[i] && qpos[i] < hi)) return false;
    for (let i = 0; i < spec.nv; i++) if (!(lo < qvel[i] && qvel[i] < hi)) return false;
  }
  return true;
}

/** Gym v3 `_get_obs`: obs = [qpos[1:], clip(qvel, ±qvelClip)], written into `out` at `offset` (rounded when float32). */
export function writeObservation(
  spec: EnvSpec,
  qpos: ArrayLike<number>,
  qvel: ArrayLike<number>,
  out: Float32Array | Float64Array,
  offset: number,
): void {
  let k = offset;
  for (let i = 1; i < spec.nq; i++) out[k++] = qpos[i];
  const c = spec.qvelClip;
  for (let i = 0; i < spec.nv; i++) out[k++] = Math.min(Math.max(qvel[i], -c), c);
}
