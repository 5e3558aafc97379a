/**
 * Hopper, HalfCheetah and Walker2d on the official MuJoCo WebAssembly build, reproducing the
 * Gym v3 environments (Hopper-v3, HalfCheetah-v3, Walker2d-v3) that the D4RL v2 datasets were
 * collected with: same observations, rewards, termination, reset noise and 1000-step horizon.
 *
 * Models are in `./models/*.xml` (Gym's XML rewritten for MuJoCo 3, see the comments there); the
 * specs (sizes, rewards, termination, observation layout) are in `./specs.ts`, which needs no MuJoCo.
 *
 * Two classes share one implementation (`Sim`, one MjData each):
 * - {@link LocomotionEnv}: one environment, Gym-like `reset` / `step`.
 * - {@link VecLocomotionEnv}: n environments over one MjModel, stepped together from one flat
 *   action array; per-environment `reset(i)` lets collection auto-reset and evaluation stop.
 *
 * Randomness only enters through the reset noise, drawn from a seeded {@link Rng}, and MuJoCo is
 * deterministic, so the same seed and actions give a bitwise-identical trajectory.
 * @module
 */

import loadMujocoFactory, { type MainModule, type MjData, type MjModel } from "@mujoco/mujoco";
import { Rng } from "../numerics/random.ts";
import { fail } from "../core/errors.ts";
import {
  ENV_SPECS,
  type EnvName,
  type EnvSpec,
  isHealthy,
  MASS_TOLERANCE,
  writeObservation,
} from "./specs.ts";

// ---------------------------------------------------------------------------------------------
// MuJoCo loading
// ---------------------------------------------------------------------------------------------

let mujocoPromise: Promise<MainModule> | null = null;

/** The MuJoCo WASM module, instantiated once per process (later calls share the promise). */
export function loadMujoco(): Promise<MainModule> {
  if (mujocoPromise === null) {
    mujocoPromise = loadMujocoFactory().catch((err) => {
      mujocoPromise = null; // let a later call retry instead of caching the failure
      throw err;
    });
  }
  return mujocoPromise;
}

/** The model XML of an environment (the files under `./models`). */
export function readModelXml(env: EnvName): Promise<string> {
  return Deno.readTextFile(new URL(ENV_SPECS[env].xmlFile, import.meta.url));
}

/** `mj_version()` of MuJoCo 3.5.0, the first engine that sums the two geoms' margins of a contact pair. */
export const MARGIN_SUM_VERSION = 3_005_000;

/**
 * Keeps Gym's contact margins under MuJoCo >= 3.5. The XML files hold Gym's values (the documented
 * truth), which Gym-era engines applied to a pair as the *larger* of its two geoms' margins; MuJoCo
 * 3.5 and later apply their *sum*, so Hopper's 1 mm margin became 2 mm and contacts opened early.
 * When every colliding geom has the same margin m, m/2 per geom sums to m, the old rule's value. A
 * model with differing margins cannot be mapped geom by geom and is refused.
 */
export function adaptContactMargins(model: MjModel, engineVersion: number, file: string): void {
  if (engineVersion < MARGIN_SUM_VERSION) return;
  const margin = model.geom_margin as Float64Array;
  const contype = model.geom_contype as Int32Array;
  const conaffinity = model.geom_conaffinity as Int32Array;
  const colliding = [...margin.keys()].filter((g) => contype[g] !== 0 || conaffinity[g] !== 0);
  const values = new Set(colliding.map((g) => margin[g]));
  if (values.size > 1) {
    fail(
      "input",
      `${file}: colliding geoms have different contact margins (${
        [...values].join(", ")
      }); MuJoCo >= 3.5 sums a ` +
        "pair's margins where Gym's engines took the larger, which no per-geom value reproduces",
      "give every colliding geom one margin",
    );
  }
  for (const g of colliding) margin[g] /= 2;
}

/**
 * Compiles the model of `env` and checks it against its spec (sizes, timestep, ctrlrange, the
 * recorded mujoco-py body masses), so a wrong XML fails loudly instead of silently changing the
 * dynamics. The caller owns the model and must `.delete()` it.
 */
export async function loadModel(env: EnvName): Promise<MjModel> {
  return compileModel(env, await readModelXml(env));
}

/**
 * Compiles `xml` as the model of `env` with the checks of {@link loadModel}; `file` names it in
 * errors. A model MuJoCo rejects, or whose body masses differ from the spec's `bodyMasses` by more
 * than {@link MASS_TOLERANCE}, fails with an "input" `PipelineFailure` (core/errors.ts) of one line.
 */
export async function compileModel(
  env: EnvName,
  xml: string,
  file: string = repoPath(ENV_SPECS[env]),
): Promise<MjModel> {
  const mujoco = await loadMujoco();
  const spec = ENV_SPECS[env];
  let model: MjModel;
  try {
    model = mujoco.MjModel.from_xml_string(xml);
  } catch (err) {
    fail(
      "input",
      `${file}: MuJoCo ${mujoco.mj_versionString()} rejects the model: ${loadingError(err)}`,
      `restore ${repoPath(spec)} from the repository (the models must be MuJoCo 3 MJCF in local coordinates)`,
    );
  }
  try {
    adaptContactMargins(model, mujoco.mj_version(), file);
    checkBodyMasses(mujoco, model, spec, file);
    const opt = model.opt; // a fresh wrapper per access: free it
    const timestep = opt.timestep;
    opt.delete();
    const ctrlrange = model.actuator_ctrlrange as Float64Array;
    const problems: string[] = [];
    if (model.nq !== spec.nq || model.nv !== spec.nv || model.nu !== spec.actDim) {
      problems.push(`nq/nv/nu ${model.nq}/${model.nv}/${model.nu}`);
    }
    if (timestep !== spec.timestep) problems.push(`timestep ${timestep}`);
    for (let j = 0; j < spec.actDim; j++) {
      if (ctrlrange[2 * j] !== spec.actionLow || ctrlrange[2 * j + 1] !== spec.actionHigh) {
        problems.push(`ctrlrange of actuator ${j}`);
      }
    }
    if (problems.length > 0) {
      fail(
        "input",
        `${file} does not match its spec: ${problems.join(", ")}`,
        `restore ${repoPath(spec)} from the repository`,
      );
    }
    return model;
  } catch (err) {
    model.delete();
    throw err;
  }
}

/** The model file as a user sees it, relative to the repository (`envs/models/…`). */
function repoPath(spec: EnvSpec): string {
  return `envs/${spec.xmlFile.replace(/^\.\//, "")}`;
}

/** MuJoCo's loading error on one line: its "MuJoCo Error: Loading error:" prefixes and repeats dropped. */
function loadingError(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const lines = text.split("\n")
    .map((l) => l.replace(/^(Error: )?(MuJoCo Error: )?(Loading error: )?/, "").trim())
    .filter((l) => l !== "");
  const unique = [...new Set(lines)];
  return unique.length > 1 ? `${unique[0]} (${unique.slice(1).join("; ")})` : unique[0] ?? "unknown error";
}

/**
 * The compiled body masses must be the recorded ones (the spec's `bodyMasses`, within MASS_TOLERANCE):
 * the datasets were collected with them (v3: mujoco-py's capsule rule, which MuJoCo >= 2.1.1 no longer
 * applies; v5: exact capsules).
 */
function checkBodyMasses(mujoco: MainModule, model: MjModel, spec: EnvSpec, file: string): void {
  const mass = model.body_mass as Float64Array;
  const recordedModel = `the recorded ${spec.gymId} model`;
  const hint = `the masses follow the rule in the header of ${
    repoPath(spec)
  }; restore the file from the repository`;
  if (model.nbody - 1 !== spec.bodyMasses.length) {
    fail("input", `${file}: ${model.nbody - 1} bodies, ${recordedModel} has ${spec.bodyMasses.length}`, hint);
  }
  spec.bodyMasses.forEach(([body, recorded], k) => {
    const name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY.value, k + 1);
    if (name !== body) {
      fail("input", `${file}: body ${k + 1} is "${name}", ${recordedModel} has "${body}"`, hint);
    }
    if (!(Math.abs(mass[k + 1] - recorded) <= MASS_TOLERANCE)) {
      const found = mass[k + 1];
      fail(
        "input",
        `${file}: body "${body}" has mass ${found} kg, ${recordedModel} has ${recorded} kg (more than ${MASS_TOLERANCE} apart)`,
        hint,
      );
    }
  });
}

// ---------------------------------------------------------------------------------------------
// One simulated environment (shared by the single and the vectorized class)
// ---------------------------------------------------------------------------------------------

/**
 * One MjData plus its episode bookkeeping. `data.qpos` etc. build a new typed-array view on every
 * access (~0.4 µs), so the views are cached; they are re-made whenever the WASM heap has grown
 * (creating any model/data can grow it, which detaches old views: their length becomes 0).
 * `step` reports through fields rather than a returned object so that stepping allocates nothing.
 */
class Sim {
  readonly data: MjData;
  #qpos!: Float64Array;
  #qvel!: Float64Array;
  #ctrl!: Float64Array;
  /** Model's reference configuration, Gym's init_qpos (init_qvel is zero). */
  readonly #qpos0: Float64Array;
  readonly #rng: Rng;
  elapsedSteps = 0;
  hasBeenReset = false;
  /** Outcome of the last `step`. */
  reward = 0;
  terminated = false;
  truncated = false;

  constructor(
    readonly mujoco: MainModule,
    readonly model: MjModel,
    readonly spec: EnvSpec,
    rng: Rng,
  ) {
    this.data = new mujoco.MjData(model);
    this.#qpos0 = Float64Array.from(model.qpos0 as Float64Array);
    this.#rng = rng;
    this.#refreshViews();
  }

  #refreshViews(): void {
    this.#qpos = this.data.qpos;
    this.#qvel = this.data.qvel;
    this.#ctrl = this.data.ctrl;
  }

  /** Live view of qpos, valid until the next MuJoCo allocation. */
  get qpos(): Float64Array {
    if (this.#qpos.length === 0) this.#refreshViews();
    return this.#qpos;
  }

  /** Live view of qvel, valid until the next MuJoCo allocation. */
  get qvel(): Float64Array {
    if (this.#qvel.length === 0) this.#refreshViews();
    return this.#qvel;
  }

  /** Live view of ctrl, valid until the next MuJoCo allocation. */
  get ctrl(): Float64Array {
    if (this.#ctrl.length === 0) this.#refreshViews();
    return this.#ctrl;
  }

  /**
   * Gym `reset`: mj_resetData, then qpos = qpos0 + U(−s, s)^nq and qvel = U(−s, s)^nv (Hopper,
   * Walker2d) or s·N(0, 1)^nv (HalfCheetah), qpos noise drawn first; then mj_forward.
   */
  reset(obs: Float32Array, offset: number): void {
    const { spec } = this;
    const s = spec.resetNoiseScale;
    const rng = this.#rng;
    this.mujoco.mj_resetData(this.model, this.data);
    const qpos = this.qpos;
    const qvel = this.qvel;
    for (let i = 0; i < spec.nq; i++) qpos[i] = this.#qpos0[i] + rng.uniformRange(-s, s);
    for (let i = 0; i < spec.nv; i++) {
      qvel[i] = spec.qvelNoise === "normal" ? s * rng.normal() : rng.uniformRange(-s, s);
    }
    this.mujoco.mj_forward(this.model, this.data);
    this.elapsedSteps = 0;
    this.hasBeenReset = true;
    writeObservation(spec, qpos, qvel, obs, offset);
  }

  /** Gym `set_state`: overwrite qpos / qvel and recompute derived quantities (mj_forward). */
  setState(qposIn: ArrayLike<number>, qvelIn: ArrayLike<number>, obs: Float32Array, offset: number): void {
    const { spec } = this;
    if (qposIn.length !== spec.nq || qvelIn.length !== spec.nv) {
      throw new RangeError(`setState expects qpos[${spec.nq}] and qvel[${spec.nv}]`);
    }
    const qpos = this.qpos;
    const qvel = this.qvel;
    for (let i = 0; i < spec.nq; i++) qpos[i] = qposIn[i];
    for (let i = 0; i < spec.nv; i++) qvel[i] = qvelIn[i];
    this.mujoco.mj_forward(this.model, this.data);
    this.hasBeenReset = true;
    writeObservation(spec, qpos, qvel, obs, offset);
  }

  /**
   * Gym v3 `step`. ctrl = action (MuJoCo clamps it to ctrlrange inside mj_step; the control
   * cost uses the action as given, unclipped, exactly like Gym), then frameSkip mj_steps:
   *
   *   x_velocity = (qpos_after[0] − qpos_before[0]) / dt
   *   reward     = forward_weight · x_velocity + healthy_reward − ctrl_weight · Σ action²
   *   terminated = terminate_when_unhealthy and not is_healthy(state after the step)
   *   truncated  = elapsed steps ≥ horizon (TimeLimit; may coincide with terminated)
   */
  step(action: ArrayLike<number>, actOffset: number, obs: Float32Array, obsOffset: number): void {
    const { spec, mujoco, model, data } = this;
    if (!this.hasBeenReset) throw new Error(`${spec.gymId}: call reset() before step()`);

    const xBefore = this.qpos[0];
    const ctrl = this.ctrl;
    let sumSquares = 0;
    for (let j = 0; j < spec.actDim; j++) {
      const a = action[actOffset + j];
      ctrl[j] = a;
      sumSquares += a * a;
    }
    for (let k = 0; k < spec.frameSkip; k++) mujoco.mj_step(model, data);
    const qpos = this.qpos;
    const qvel = this.qvel;
    const xAfter = qpos[0];

    const xVelocity = (xAfter - xBefore) / spec.dt;
    const ctrlCost = spec.ctrlCostWeight * sumSquares;
    const healthy = isHealthy(spec, qpos, qvel);
    const survive = spec.healthyRewardOnlyWhenHealthy && !healthy ? 0 : spec.healthyReward;
    this.reward = spec.forwardRewardWeight * xVelocity + survive - ctrlCost;
    this.terminated = spec.terminateWhenUnhealthy && !healthy;
    this.elapsedSteps++;
    this.truncated = this.elapsedSteps >= spec.horizon;

    writeObservation(spec, qpos, qvel, obs, obsOffset);
  }

  dispose(): void {
    this.data.delete();
  }
}

// ---------------------------------------------------------------------------------------------
// Public environments
// ---------------------------------------------------------------------------------------------

/** Options shared by both environment classes. */
export interface EnvOptions {
  /**
   * Seed of the reset noise (default 0). A `LocomotionEnv` also accepts an `Rng` directly; a
   * `VecLocomotionEnv` gives environment i the i-th `fork()` of `new Rng(seed)`.
   */
  seed?: number;
}

/** Result of {@link LocomotionEnv.step}. */
export interface StepResult {
  /** Next observation (a fresh array unless an output buffer was passed). */
  obs: Float32Array;
  /** Reward of the step. */
  reward: number;
  /** The MDP ended (unhealthy); do not bootstrap. */
  terminated: boolean;
  /** The time limit was reached; bootstrap from `obs`. */
  truncated: boolean;
}

/** One Gym-v3-compatible environment. Create with {@link LocomotionEnv.create}; `dispose()` when done. */
export class LocomotionEnv {
  /** Static description (sizes, dt, reward constants...). */
  readonly spec: EnvSpec;
  readonly #model: MjModel;
  readonly #sim: Sim;

  private constructor(mujoco: MainModule, model: MjModel, spec: EnvSpec, rng: Rng) {
    this.spec = spec;
    this.#model = model;
    this.#sim = new Sim(mujoco, model, spec, rng);
  }

  /** Builds the environment; `rng` (or a seed, default 0) drives the reset noise. */
  static async create(env: EnvName, options: EnvOptions & { rng?: Rng } = {}): Promise<LocomotionEnv> {
    const mujoco = await loadMujoco();
    const model = await loadModel(env);
    const rng = options.rng ?? new Rng(options.seed ?? 0);
    try {
      return new LocomotionEnv(mujoco, model, ENV_SPECS[env], rng);
    } catch (err) {
      model.delete();
      throw err;
    }
  }

  /** Starts an episode from the noisy initial state; returns the first observation. */
  reset(out: Float32Array = new Float32Array(this.spec.obsDim)): Float32Array {
    this.#sim.reset(out, 0);
    return out;
  }

  /** Advances one environment step (frameSkip physics steps) with `action` (length actDim). */
  step(action: ArrayLike<number>, out: Float32Array = new Float32Array(this.spec.obsDim)): StepResult {
    if (action.length !== this.spec.actDim) {
      throw new RangeError(`${this.spec.gymId} expects ${this.spec.actDim} actions, got ${action.length}`);
    }
    const sim = this.#sim;
    sim.step(action, 0, out, 0);
    return { obs: out, reward: sim.reward, terminated: sim.terminated, truncated: sim.truncated };
  }

  /** Sets qpos / qvel (Gym `set_state`) and returns the matching observation; the step count is kept. */
  setState(qpos: ArrayLike<number>, qvel: ArrayLike<number>): Float32Array {
    const out = new Float32Array(this.spec.obsDim);
    this.#sim.setState(qpos, qvel, out, 0);
    return out;
  }

  /** A copy of the generalized positions (qpos[0] is x, qpos[1] z, qpos[2] the torso angle). */
  getQpos(): Float64Array {
    return this.#sim.qpos.slice();
  }

  /** A copy of the generalized velocities. */
  getQvel(): Float64Array {
    return this.#sim.qvel.slice();
  }

  /** Steps since the last reset. */
  get elapsedSteps(): number {
    return this.#sim.elapsedSteps;
  }

  /** The underlying MuJoCo model (advanced use; do not delete it). */
  // deno-doc-ignore private-type-ref -- MjModel/MjData are @mujoco/mujoco's own types
  get model(): MjModel {
    return this.#model;
  }

  /** The underlying MuJoCo data (advanced use; its array views detach when the WASM heap grows). */
  // deno-doc-ignore private-type-ref -- MjModel/MjData are @mujoco/mujoco's own types
  get data(): MjData {
    return this.#sim.data;
  }

  /** Frees the MuJoCo objects; the environment is unusable afterwards. */
  dispose(): void {
    this.#sim.dispose();
    this.#model.delete();
  }
}

/** Buffers returned by {@link VecLocomotionEnv.step}; they are overwritten by the next call. */
export interface VecStepResult {
  /** Next observations, numEnvs × obsDim row-major. */
  obs: Float32Array;
  /** Reward of each environment's step, length numEnvs. */
  rewards: Float64Array;
  /** 1 where the environment's MDP ended (unhealthy), length numEnvs. */
  terminated: Uint8Array;
  /** 1 where the environment reached the time limit, length numEnvs. */
  truncated: Uint8Array;
}

/**
 * n independent environments sharing one MjModel, stepped from one flat action array. Nothing
 * resets automatically: after a step with terminated/truncated set, the caller copies what it needs
 * and calls `reset(i)` (collection), or stops stepping that environment (evaluation, via `active`).
 */
export class VecLocomotionEnv {
  /** Static description (sizes, dt, reward constants...). */
  readonly spec: EnvSpec;
  /** Number of environments stepped together. */
  readonly numEnvs: number;
  /** Current observations of all environments (numEnvs × obsDim), updated in place. */
  readonly obs: Float32Array;
  readonly #rewards: Float64Array;
  readonly #terminated: Uint8Array;
  readonly #truncated: Uint8Array;
  readonly #model: MjModel;
  readonly #sims: Sim[];

  private constructor(mujoco: MainModule, model: MjModel, spec: EnvSpec, numEnvs: number, seed: number) {
    this.spec = spec;
    this.numEnvs = numEnvs;
    this.#model = model;
    this.obs = new Float32Array(numEnvs * spec.obsDim);
    this.#rewards = new Float64Array(numEnvs);
    this.#terminated = new Uint8Array(numEnvs);
    this.#truncated = new Uint8Array(numEnvs);
    const root = new Rng(seed);
    this.#sims = [];
    try {
      for (let i = 0; i < numEnvs; i++) this.#sims.push(new Sim(mujoco, model, spec, root.fork()));
    } catch (err) {
      for (const sim of this.#sims) sim.dispose();
      throw err;
    }
  }

  /** Builds `numEnvs` environments; environment i's reset noise comes from the i-th fork of `new Rng(seed)`. */
  static async create(env: EnvName, numEnvs: number, options: EnvOptions = {}): Promise<VecLocomotionEnv> {
    if (!Number.isInteger(numEnvs) || numEnvs < 1) {
      throw new RangeError(`numEnvs must be ≥ 1, got ${numEnvs}`);
    }
    const mujoco = await loadMujoco();
    const model = await loadModel(env);
    try {
      return new VecLocomotionEnv(mujoco, model, ENV_SPECS[env], numEnvs, options.seed ?? 0);
    } catch (err) {
      model.delete();
      throw err;
    }
  }

  /** Resets environment i; returns its new observation (a view into `obs`). */
  reset(i: number): Float32Array {
    const d = this.spec.obsDim;
    this.#sims[this.#index(i)].reset(this.obs, i * d);
    return this.obs.subarray(i * d, (i + 1) * d);
  }

  /** Resets every environment; returns `obs`. */
  resetAll(): Float32Array {
    for (let i = 0; i < this.numEnvs; i++) this.#sims[i].reset(this.obs, i * this.spec.obsDim);
    return this.obs;
  }

  /**
   * Steps every environment with its slice of `actions` (numEnvs × actDim). Environments with
   * `active[i] === 0` are skipped: their obs stay, reward 0, flags 0.
   */
  step(actions: ArrayLike<number>, active?: ArrayLike<number>): VecStepResult {
    const { obsDim, actDim } = this.spec;
    if (actions.length !== this.numEnvs * actDim) {
      throw new RangeError(`expected ${this.numEnvs * actDim} actions, got ${actions.length}`);
    }
    for (let i = 0; i < this.numEnvs; i++) {
      if (active !== undefined && !active[i]) {
        this.#rewards[i] = 0;
        this.#terminated[i] = 0;
        this.#truncated[i] = 0;
        continue;
      }
      const sim = this.#sims[i];
      sim.step(actions, i * actDim, this.obs, i * obsDim);
      this.#rewards[i] = sim.reward;
      this.#terminated[i] = sim.terminated ? 1 : 0;
      this.#truncated[i] = sim.truncated ? 1 : 0;
    }
    return {
      obs: this.obs,
      rewards: this.#rewards,
      terminated: this.#terminated,
      truncated: this.#truncated,
    };
  }

  /** Sets qpos / qvel of environment i (Gym `set_state`); returns its observation (a view into `obs`). */
  setState(i: number, qpos: ArrayLike<number>, qvel: ArrayLike<number>): Float32Array {
    const d = this.spec.obsDim;
    this.#sims[this.#index(i)].setState(qpos, qvel, this.obs, i * d);
    return this.obs.subarray(i * d, (i + 1) * d);
  }

  /** A copy of environment i's generalized positions. */
  getQpos(i: number): Float64Array {
    return this.#sims[this.#index(i)].qpos.slice();
  }

  /** A copy of environment i's generalized velocities. */
  getQvel(i: number): Float64Array {
    return this.#sims[this.#index(i)].qvel.slice();
  }

  /** Steps since environment i was last reset. */
  elapsedSteps(i: number): number {
    return this.#sims[this.#index(i)].elapsedSteps;
  }

  /** The shared MuJoCo model (advanced use; do not delete it). */
  // deno-doc-ignore private-type-ref -- MjModel/MjData are @mujoco/mujoco's own types
  get model(): MjModel {
    return this.#model;
  }

  /** Environment i's MuJoCo data (advanced use). */
  // deno-doc-ignore private-type-ref -- MjModel/MjData are @mujoco/mujoco's own types
  data(i: number): MjData {
    return this.#sims[this.#index(i)].data;
  }

  /** Frees every MjData and the shared MjModel. */
  dispose(): void {
    for (const sim of this.#sims) sim.dispose();
    this.#model.delete();
  }

  #index(i: number): number {
    if (!Number.isInteger(i) || i < 0 || i >= this.numEnvs) {
      throw new RangeError(`env index ${i} out of range`);
    }
    return i;
  }
}
