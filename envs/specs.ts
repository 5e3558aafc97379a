/**
 * Static descriptions of the three D4RL locomotion environments (Gym's Hopper-v3, HalfCheetah-v3
 * and Walker2d-v3): sizes, timing, reward and termination constants, D4RL reference scores, the
 * health test and the observation layout. Nothing here needs MuJoCo, so stages, reports and
 * commands that only need the specs import this module and not the physics
 * (`./locomotion.ts`).
 * @module
 */

// ---------------------------------------------------------------------------------------------
// Specs
// ---------------------------------------------------------------------------------------------

/** The three D4RL locomotion environments. */
export type EnvName = "hopper" | "halfcheetah" | "walker2d";

/** Every {@link EnvName}, in a fixed order. */
export const ENV_NAMES: readonly EnvName[] = ["hopper", "halfcheetah", "walker2d"];

/** Static description of one environment: sizes, timing, reward/termination constants, D4RL scores. */
export interface EnvSpec {
  /** Short name of the environment. */
  readonly name: EnvName;
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
  /** Paid on every step, including the terminating one (Gym: terminate_when_unhealthy=True). */
  readonly healthyReward: number;
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
  /** D4RL reference returns (random, expert) behind the normalized score. */
  readonly refMinScore: number;
  /** D4RL expert reference return (normalized score 100). */
  readonly refMaxScore: number;
}

/** Hopper-v3 (gym/envs/mujoco/hopper_v3.py): 4 × 2 ms RK4 steps, 3 motors. */
const HOPPER: EnvSpec = {
  name: "hopper",
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
};

/** HalfCheetah-v3 (gym/envs/mujoco/half_cheetah_v3.py): 5 × 10 ms Euler steps, 6 motors, never terminates. */
const HALFCHEETAH: EnvSpec = {
  name: "halfcheetah",
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
};

/** Walker2d-v3 (gym/envs/mujoco/walker2d_v3.py): 4 × 2 ms RK4 steps, 6 motors. */
const WALKER2D: EnvSpec = {
  name: "walker2d",
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
};

/** Spec of every environment, by name. */
export const ENV_SPECS: Readonly<Record<EnvName, EnvSpec>> = {
  hopper: HOPPER,
  halfcheetah: HALFCHEETAH,
  walker2d: WALKER2D,
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

/** Gym v3 `_get_obs`: obs = [qpos[1:], clip(qvel, ±qvelClip)], rounded to float32, written at `offset`. */
export function writeObservation(
  spec: EnvSpec,
  qpos: ArrayLike<number>,
  qvel: ArrayLike<number>,
  out: Float32Array,
  offset: number,
): void {
  let k = offset;
  for (let i = 1; i < spec.nq; i++) out[k++] = qpos[i];
  const c = spec.qvelClip;
  for (let i = 0; i < spec.nv; i++) out[k++] = Math.min(Math.max(qvel[i], -c), c);
}
