/**
 * The teacher as later stages see it: a policy π* and a critic q* over normalized states, whatever
 * trained them (TD3+BC, Cal-QL, or an imported CORL checkpoint).
 *
 * - {@link TeacherArtifact}: the portable value — weights, architecture, state normalization,
 *   training and evaluation facts. It is what the `teacher` stage returns (the runtime caches it)
 *   and what `saveTeacherDir` / `loadTeacherDir` write and read as `teacher.json` + `.bin` files.
 * - {@link Teacher}: the same weights on the tensor backend, with `act` and `q`.
 *
 * Actors come in two kinds, as in CORL:
 *   deterministic (TD3+BC):  a = m · tanh(f(s))
 *   tanh-Gaussian (Cal-QL):  [μ, ℓ] = f(s), log σ = clip(k·ℓ + c, −20, 2),
 *                            a = m · tanh(μ + σ·ε), ε ~ N(0, I); deterministic: a = m · tanh(μ)
 * with f a ReLU MLP, m the max action, k and c CORL's `log_std_multiplier` and `log_std_offset`.
 * The critic is a ReLU MLP on concat(s, a) with one output.
 * @module
 */

import { writeAtomic } from "../../core/atomic.ts";
import * as tf from "@tensorflow/tfjs";
import { dirname, join } from "node:path";
import type { EnvName } from "../../envs/specs.ts";
import type { BatchPolicy } from "../../envs/rollout.ts";
import { fail } from "../../core/errors.ts";
import { sha256Hex } from "../../core/hash.ts";
import {
  checkMlpWeights,
  type Dense,
  disposeMlp,
  mlpForward,
  type MlpParams,
  mlpTensors,
  type MlpWeights,
} from "../../numerics/mlp.ts";
import { Rng } from "../../numerics/random.ts";

/** Name written in every saved teacher, so a stray JSON file is recognised as not one. */
export const TEACHER_FORMAT = "obd-teacher";
/** Bumped when the saved layout changes; readers refuse versions they do not know. */
export const TEACHER_FORMAT_VERSION = 1;

/** The algorithms that produce teachers. */
export type TeacherAlgorithm = "td3bc" | "calql";

/** How actions are drawn: the mode of the policy, or a sample from it. */
export type ActMode = "deterministic" | "sampled";

/** CORL's tanh-Gaussian head: log σ = clip(multiplier·ℓ + offset, logStdMin, logStdMax). */
export interface GaussianHead {
  /** Multiplier applied to the raw log-std output ℓ. */
  readonly logStdMultiplier: number;
  /** Offset added to the scaled ℓ. */
  readonly logStdOffset: number;
  /** Lower clip of log σ. */
  readonly logStdMin: number;
  /** Upper clip of log σ. */
  readonly logStdMax: number;
}

/** CORL's defaults for `TanhGaussianPolicy` (multiplier 1, offset −1, clip [−20, 2]). */
export const CORL_GAUSSIAN_HEAD: GaussianHead = {
  logStdMultiplier: 1,
  logStdOffset: -1,
  logStdMin: -20,
  logStdMax: 2,
};

/** A saved actor. `net` ends in actDim outputs (deterministic, tanh applied) or 2·actDim (μ then ℓ). */
export type TeacherActor =
  | { readonly kind: "deterministic"; readonly net: MlpWeights }
  | { readonly kind: "tanh-gaussian"; readonly net: MlpWeights; readonly head: GaussianHead };

/** How the teacher scored in the environment (normalized returns, D4RL percent). */
export interface TeacherEvaluation {
  /** Number of evaluation episodes. */
  readonly episodes: number;
  /** Seed of the evaluation episodes. */
  readonly seed: number;
  /** Mean of `normalizedScores`. */
  readonly meanNormalizedScore: number;
  /** D4RL normalized score (percent) of each episode. */
  readonly normalizedScores: Float64Array;
  /** Undiscounted return of each episode. */
  readonly returns: Float64Array;
}

/** One intermediate evaluation of a teacher during training. */
export interface TeacherCurvePoint {
  /** Gradient steps done. */
  readonly step: number;
  /** Mean normalized return of the evaluation episodes. */
  readonly normalizedScore: number;
}

/** A teacher as a plain value: what the stage caches and what the directory format holds. */
export interface TeacherArtifact {
  /** Always {@link TEACHER_FORMAT}. */
  readonly format: typeof TEACHER_FORMAT;
  /** Layout version, {@link TEACHER_FORMAT_VERSION}. */
  readonly formatVersion: typeof TEACHER_FORMAT_VERSION;
  /** The algorithm that trained the teacher. */
  readonly algorithm: TeacherAlgorithm;
  /** `trained` by this toolkit, or `imported:<file name>`. */
  readonly source: string;
  /** The environment, when known (an imported checkpoint without `--dataset` may not say). */
  readonly env: EnvName | null;
  /** State dimension. */
  readonly obsDim: number;
  /** Action dimension. */
  readonly actDim: number;
  /** Actions are tanh outputs scaled by this bound. */
  readonly maxAction: number;
  /** The networks take (s − stateMean) / stateStd. Identity (0 and 1) when unknown. */
  readonly stateMean: Float32Array;
  /** Per-dimension state std of the normalization, length obsDim. */
  readonly stateStd: Float32Array;
  /** The policy network π*. */
  readonly actor: TeacherActor;
  /** q*(s, a): critic 1 on concat(normalized s, a). */
  readonly critic: MlpWeights;
  /**
   * Gradient steps and wall-clock seconds of training (0 when unknown), and the intermediate
   * evaluations (every `evalEvery` steps) when it was trained here with them.
   */
  readonly training: {
    readonly steps: number;
    readonly seconds: number;
    readonly curve?: readonly TeacherCurvePoint[];
  };
  /** The final evaluation, or null when none was run. */
  readonly evaluation: TeacherEvaluation | null;
}

// ---------------------------------------------------------------------------------------------
// The tanh-Gaussian policy, as pure tensor functions (also used by Cal-QL's updates)
// ---------------------------------------------------------------------------------------------

/**
 * Splits an actor output [n, 2A] into μ and the clipped log σ. The head's multiplier and offset may
 * be tensors (they are trained parameters in CORL) or numbers.
 */
export function gaussianParams(
  out: tf.Tensor2D,
  actDim: number,
  head: Omit<GaussianHead, "logStdMultiplier" | "logStdOffset"> & {
    readonly logStdMultiplier: number | tf.Tensor;
    readonly logStdOffset: number | tf.Tensor;
  },
): { mean: tf.Tensor2D; logStd: tf.Tensor2D } {
  const mean = tf.slice(out, [0, 0], [-1, actDim]);
  const raw = tf.slice(out, [0, actDim], [-1, actDim]);
  const logStd = tf.clipByValue(
    tf.add(tf.mul(raw, head.logStdMultiplier), head.logStdOffset),
    head.logStdMin,
    head.logStdMax,
  );
  return { mean, logStd: logStd as tf.Tensor2D };
}

const HALF_LOG_2PI = 0.5 * Math.log(2 * Math.PI);

/**
 * Reparameterised sample and its log-density (of the tanh sample, before scaling by m, as CORL):
 *   x = μ + σ·ε,   a = m · tanh(x),
 *   log π(a|s) = Σ_j [ −ε_j²/2 − log σ_j − ½ log 2π ] − Σ_j 2 (log 2 − x_j − softplus(−2 x_j)),
 * the second sum being log |d tanh(x)/dx| (PyTorch's `TanhTransform.log_abs_det_jacobian`).
 */
export function tanhGaussianSample(
  mean: tf.Tensor2D,
  logStd: tf.Tensor2D,
  eps: tf.Tensor2D,
  maxAction: number,
): { action: tf.Tensor2D; logProb: tf.Tensor1D } {
  const x = tf.add(mean, tf.mul(tf.exp(logStd), eps));
  const gaussian = tf.sub(tf.sub(tf.mul(tf.square(eps), -0.5), logStd), HALF_LOG_2PI);
  const logDetJacobian = tf.mul(tf.sub(tf.sub(Math.LN2, x), tf.softplus(tf.mul(x, -2))), 2);
  const logProb = tf.sum(tf.sub(gaussian, logDetJacobian), 1) as tf.Tensor1D;
  const action = tf.mul(tf.tanh(x), maxAction) as tf.Tensor2D;
  return { action, logProb };
}

/** q(s, a) = critic(concat(s, a)) as a vector [n]. Pure in its arguments. */
export function criticForward(critic: MlpParams, states: tf.Tensor2D, actions: tf.Tensor2D): tf.Tensor1D {
  return tf.reshape(mlpForward(critic, tf.concat([states, actions], 1), "relu", "linear"), [
    -1,
  ]) as tf.Tensor1D;
}

/** Deterministic action of an actor network for normalized states. Pure in its arguments. */
export function actorMode(
  actor: TeacherActor["kind"],
  net: MlpParams,
  states: tf.Tensor2D,
  actDim: number,
  maxAction: number,
): tf.Tensor2D {
  if (actor === "deterministic") {
    return tf.mul(mlpForward(net, states, "relu", "tanh"), maxAction) as tf.Tensor2D;
  }
  const mean = tf.slice(mlpForward(net, states, "relu", "linear"), [0, 0], [-1, actDim]);
  return tf.mul(tf.tanh(mean), maxAction) as tf.Tensor2D;
}

// ---------------------------------------------------------------------------------------------
// The Teacher: an artifact on the backend
// ---------------------------------------------------------------------------------------------

/** π* and q* ready to use. States are normalized (the networks' input space) unless a method says raw. */
export interface Teacher {
  /** The artifact the teacher was built from. */
  readonly artifact: TeacherArtifact;
  /** State dimension. */
  readonly obsDim: number;
  /** Action dimension. */
  readonly actDim: number;
  /** Bound of every action dimension. */
  readonly maxAction: number;
  /** Per-dimension state mean of the normalization, length obsDim. */
  readonly stateMean: Float32Array;
  /** Per-dimension state std of the normalization, length obsDim. */
  readonly stateStd: Float32Array;
  /** (raw − stateMean) / stateStd. */
  // deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
  normalize(raw: tf.Tensor2D): tf.Tensor2D;
  /**
   * Actions [n, actDim] for normalized states [n, obsDim]. `sampled` draws a ~ π*(·|s) with noise
   * from `rng` (default: the teacher's own stream, seeded 0); a deterministic actor's sample is its
   * action.
   */
  act(states: tf.Tensor2D, mode?: ActMode, rng?: Rng): tf.Tensor2D;
  /** q*(s, a) [n] for normalized states and actions. */
  // deno-doc-ignore private-type-ref -- tf.Tensor types are tfjs's own
  q(states: tf.Tensor2D, actions: tf.Tensor2D): tf.Tensor1D;
  /** A policy on raw observations (normalizes, acts, downloads), for `evaluatePolicy`. */
  policy(mode?: ActMode, rng?: Rng): BatchPolicy;
  /** Frees the tensors. */
  dispose(): void;
}

/** Puts an artifact's weights on the backend as a {@link Teacher}. */
export function teacherFromArtifact(artifact: TeacherArtifact): Teacher {
  validateArtifact(artifact);
  const { obsDim, actDim, maxAction } = artifact;
  const actorNet = mlpTensors(artifact.actor.net);
  const criticNet = mlpTensors(artifact.critic);
  const mean = tf.tensor2d(artifact.stateMean, [1, obsDim]);
  const std = tf.tensor2d(artifact.stateStd, [1, obsDim]);
  const ownRng = new Rng(0);
  const checkStates = (s: tf.Tensor, what: string) => {
    if (s.rank !== 2 || s.shape[1] !== obsDim) {
      fail(
        "input",
        `${what} have shape [${s.shape.join(", ")}], the teacher takes [n, ${obsDim}]`,
        "pass one state per row",
      );
    }
  };
  const act = (states: tf.Tensor2D, mode: ActMode = "deterministic", rng: Rng = ownRng): tf.Tensor2D => {
    checkStates(states, "states");
    if (mode === "deterministic" || artifact.actor.kind === "deterministic") {
      return tf.tidy(() => actorMode(artifact.actor.kind, actorNet, states, actDim, maxAction));
    }
    const head = artifact.actor.head;
    const eps = rng.fillNormal(new Float32Array(states.shape[0] * actDim));
    return tf.tidy(() => {
      const { mean: mu, logStd } = gaussianParams(
        mlpForward(actorNet, states, "relu", "linear"),
        actDim,
        head,
      );
      return tanhGaussianSample(mu, logStd, tf.tensor2d(eps, [states.shape[0], actDim]), maxAction).action;
    });
  };
  const normalize = (raw: tf.Tensor2D) => {
    checkStates(raw, "observations");
    return tf.tidy(() => tf.div(tf.sub(raw, mean), std) as tf.Tensor2D);
  };
  return {
    artifact,
    obsDim,
    actDim,
    maxAction,
    stateMean: artifact.stateMean,
    stateStd: artifact.stateStd,
    normalize,
    act,
    q(states, actions) {
      checkStates(states, "states");
      if (actions.rank !== 2 || actions.shape[1] !== actDim || actions.shape[0] !== states.shape[0]) {
        fail(
          "input",
          `actions have shape [${actions.shape.join(", ")}], expected [${states.shape[0]}, ${actDim}]`,
        );
      }
      return tf.tidy(() => criticForward(criticNet, states, actions));
    },
    policy(mode: ActMode = "deterministic", rng?: Rng): BatchPolicy {
      return (raw, n) => {
        const x = tf.tensor2d(raw, [n, obsDim]);
        const s = normalize(x);
        const a = act(s, mode, rng);
        const out = a.dataSync() as Float32Array;
        tf.dispose([x, s, a]);
        return Float32Array.from(out);
      };
    },
    dispose() {
      disposeMlp(actorNet as Dense[]);
      disposeMlp(criticNet as Dense[]);
      mean.dispose();
      std.dispose();
    },
  };
}

/** Checks an artifact's internal consistency; a typed `input` error naming what is wrong. */
export function validateArtifact(a: TeacherArtifact): void {
  const where = `teacher (${a.source})`;
  if (a.format !== TEACHER_FORMAT) {
    fail("input", `${where} is not an ${TEACHER_FORMAT} value (format ${a.format})`);
  }
  if (a.formatVersion !== TEACHER_FORMAT_VERSION) {
    fail(
      "input",
      `${where} has format version ${a.formatVersion}; this toolkit reads version ${TEACHER_FORMAT_VERSION}`,
      "re-create it with this version",
    );
  }
  const expectOut = a.actor.kind === "deterministic" ? a.actDim : 2 * a.actDim;
  const check = (what: string, net: MlpWeights, inDim: number, outDim: number) => {
    try {
      checkMlpWeights(net);
    } catch (e) {
      fail("input", `${where}: ${what}: ${(e as Error).message}`);
    }
    if (net.sizes[0] !== inDim || net.sizes[net.sizes.length - 1] !== outDim) {
      fail(
        "input",
        `${where}: ${what} maps ${net.sizes[0]} → ${
          net.sizes[net.sizes.length - 1]
        }, expected ${inDim} → ${outDim}`,
      );
    }
  };
  check("actor", a.actor.net, a.obsDim, expectOut);
  check("critic", a.critic, a.obsDim + a.actDim, 1);
  if (a.stateMean.length !== a.obsDim || a.stateStd.length !== a.obsDim) {
    fail(
      "input",
      `${where}: state mean/std have ${a.stateMean.length}/${a.stateStd.length} entries, expected ${a.obsDim}`,
    );
  }
  if (!(a.maxAction > 0)) fail("input", `${where}: max action ${a.maxAction} is not positive`);
}

/**
 * Refuses a dataset whose state or action dimension differs from the teacher's (an `input` error
 * naming both), so that nothing is computed or written with a mismatched pair.
 */
export function checkTeacherFitsDataset(
  teacher: { readonly obsDim: number; readonly actDim: number; readonly source: string },
  dataset: { readonly obsDim: number; readonly actDim: number; readonly name: string },
): void {
  if (teacher.obsDim !== dataset.obsDim || teacher.actDim !== dataset.actDim) {
    fail(
      "input",
      `the teacher (${teacher.source}) takes ${teacher.obsDim}-dimensional states and gives ${teacher.actDim}-dimensional actions, but dataset ${dataset.name} has ${dataset.obsDim} and ${dataset.actDim}`,
      "use the dataset (environment) the teacher was trained on",
    );
  }
}

// ---------------------------------------------------------------------------------------------
// The directory format: teacher.json + one little-endian float32 .bin file per weight and bias
// ---------------------------------------------------------------------------------------------

/** The index file of a saved teacher. */
export const TEACHER_JSON = "teacher.json";
/**
 * The checksum manifest of a saved teacher: one `<sha256>  <file>` line per file of the directory
 * (`sha256sum`'s format, so `sha256sum -c SHA256SUMS` checks it too), teacher.json included.
 */
export const TEACHER_MANIFEST = "SHA256SUMS";

/** How a saved teacher was made, recorded in its teacher.json (absent for imports and older saves). */
export interface TeacherProvenance {
  /** The command line that made it, e.g. `["deno", "task", "teacher", "train", "embedded", …]`. */
  readonly command: readonly string[];
  /** The toolkit's version and the teacher stage's code version. */
  readonly codeVersion: { readonly tool: string; readonly teacherStage: string };
  /** The dataset it was trained on, as named and by content. */
  readonly dataset: { readonly name: string; readonly file: string; readonly sha256: string };
  /** The teacher stage's full config (its seed included). */
  readonly config: Readonly<Record<string, unknown>>;
  /** The teacher stage's cache key. */
  readonly cacheKey: string;
  /** When it was saved (ISO 8601). */
  readonly createdAt: string;
}
interface SavedArray {
  readonly file: string;
  readonly shape: number[];
  readonly sha256: string;
}
interface SavedNet {
  readonly sizes: number[];
  /** `weight` is [in, out] row-major (the transpose of PyTorch's nn.Linear.weight). */
  readonly layers: { readonly weight: SavedArray; readonly bias: SavedArray }[];
}

function bytesOf(a: Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Writes `artifact` to `dir` (which must not exist) as `teacher.json` (format, version, algorithm,
 * dimensions, normalization, architecture, facts) and `actor.<i>.weight.bin`-style files holding
 * float32 little-endian values, weights [in, out] row-major, with `provenance` when given, and the
 * checksum manifest {@link TEACHER_MANIFEST} of every file. Written atomically (`core/atomic.ts`),
 * so `dir` is complete or absent.
 */
export async function saveTeacherDir(
  dir: string,
  artifact: TeacherArtifact,
  provenance?: TeacherProvenance,
): Promise<void> {
  validateArtifact(artifact);
  if (await Deno.stat(dir).then(() => true, () => false)) {
    fail("io", `${dir} already exists`, "choose another --out or delete it; results are never overwritten");
  }
  await Deno.mkdir(dirname(dir), { recursive: true });
  await writeAtomic(dir, async (tmp) => {
    await Deno.mkdir(tmp);
    const saveNet = async (name: string, net: MlpWeights): Promise<SavedNet> => {
      const layers = [];
      for (let i = 0; i + 1 < net.sizes.length; i++) {
        const save = async (kind: string, values: Float32Array, shape: number[]): Promise<SavedArray> => {
          const file = `${name}.${i}.${kind}.bin`;
          const bytes = bytesOf(values);
          await Deno.writeFile(join(tmp, file), bytes);
          return { file, shape, sha256: await sha256Hex(bytes) };
        };
        layers.push({
          weight: await save("weight", net.weights[i], [net.sizes[i], net.sizes[i + 1]]),
          bias: await save("bias", net.biases[i], [net.sizes[i + 1]]),
        });
      }
      return { sizes: [...net.sizes], layers };
    };
    const { actor, critic, stateMean, stateStd, evaluation, ...facts } = artifact;
    const index = {
      ...facts,
      encoding:
        "each .bin: float32 little-endian, row-major; layer weight [in, out] (nn.Linear.weight transposed); ReLU between layers",
      stateMean: Array.from(stateMean),
      stateStd: Array.from(stateStd),
      actor: actor.kind === "tanh-gaussian"
        ? {
          kind: actor.kind,
          output: "[mean, log-std pre-activation]",
          head: actor.head,
          ...(await saveNet("actor", actor.net)),
        }
        : { kind: actor.kind, output: "tanh, times maxAction", ...(await saveNet("actor", actor.net)) },
      critic: await saveNet("critic", critic),
      evaluation: evaluation && {
        ...evaluation,
        normalizedScores: Array.from(evaluation.normalizedScores),
        returns: Array.from(evaluation.returns),
      },
    };
    const json = JSON.stringify(provenance ? { ...index, provenance } : index, null, 2) + "\n";
    await Deno.writeTextFile(join(tmp, TEACHER_JSON), json);
    const lines = [];
    for (const name of [...await Array.fromAsync(Deno.readDir(tmp))].map((e) => e.name).sort()) {
      lines.push(`${await sha256Hex(await Deno.readFile(join(tmp, name)))}  ${name}\n`);
    }
    await Deno.writeTextFile(join(tmp, TEACHER_MANIFEST), lines.join(""));
  }, { replace: false });
}

/**
 * Checks a saved teacher against its manifest before anything reads it: the manifest must exist,
 * every file it lists must exist with its sha256, and no file may be unlisted. Errors name the file
 * and the expected value. Returns the directory's digest: the sha256 of the manifest, which
 * identifies every file's content.
 */
export async function verifyTeacherDir(dir: string): Promise<string> {
  const manifestPath = join(dir, TEACHER_MANIFEST);
  const isDir = await Deno.stat(dir).then((s) => s.isDirectory, () => false);
  if (!isDir) {
    fail(
      "input",
      `teacher directory ${dir} does not exist`,
      "give a directory written by `deno task teacher train --out` or `teacher import --out`",
    );
  }
  const text = await Deno.readTextFile(manifestPath).catch(() =>
    fail(
      "input",
      `${manifestPath} is missing: ${dir} has no checksum manifest`,
      "save the teacher again with `deno task teacher train|import --out`",
    )
  );
  const listed = new Map<string, string>();
  text.split("\n").filter((l) => l.trim() !== "").forEach((line, i) => {
    const m = line.match(/^([0-9a-f]{64}) [ *](.+)$/);
    if (!m || m[2].includes("/")) {
      fail(
        "input",
        `${manifestPath}, line ${i + 1}, is not "<sha256>  <file name>"`,
        "save the teacher again",
      );
    }
    listed.set(m[2], m[1]);
  });
  if (!listed.has(TEACHER_JSON)) {
    fail("input", `${manifestPath} does not list ${TEACHER_JSON}`, "save the teacher again");
  }
  for (const [name, expected] of listed) {
    const path = join(dir, name);
    const bytes = await Deno.readFile(path).catch(() =>
      fail(
        "input",
        `${path} is missing (${TEACHER_MANIFEST} expects sha256 ${expected})`,
        "restore the file or save the teacher again",
      )
    );
    const got = await sha256Hex(bytes);
    if (got !== expected) {
      fail(
        "checksum",
        `${path} has sha256 ${got}, but ${TEACHER_MANIFEST} expects ${expected}`,
        "the file was changed or damaged; restore it or save the teacher again",
      );
    }
  }
  for await (const entry of Deno.readDir(dir)) {
    if (entry.name !== TEACHER_MANIFEST && !listed.has(entry.name)) {
      fail(
        "input",
        `${join(dir, entry.name)} is not listed in ${TEACHER_MANIFEST}`,
        "remove it, or save the teacher again",
      );
    }
  }
  return await sha256Hex(text);
}

/** The provenance recorded in a saved teacher (verified against its manifest), or null when it has none. */
export async function readTeacherProvenance(dir: string): Promise<TeacherProvenance | null> {
  await verifyTeacherDir(dir);
  const index = JSON.parse(await Deno.readTextFile(join(dir, TEACHER_JSON)));
  return index.provenance ?? null;
}

/**
 * Reads a directory written by {@link saveTeacherDir}: checks the manifest first
 * ({@link verifyTeacherDir}), then every weight file's size and sha256 against teacher.json.
 */
export async function loadTeacherDir(dir: string): Promise<TeacherArtifact> {
  await verifyTeacherDir(dir);
  const indexPath = join(dir, TEACHER_JSON);
  const text = await Deno.readTextFile(indexPath).catch((e) =>
    fail(
      "input",
      `${indexPath} cannot be read (${(e as Error).message.split("\n")[0]})`,
      "give a directory written by `deno task teacher import` or `train --out`",
    )
  );
  let index: any;
  try {
    index = JSON.parse(text);
  } catch (e) {
    fail("input", `${indexPath} is not JSON (${(e as Error).message})`);
  }
  if (index.format !== TEACHER_FORMAT) {
    fail("input", `${indexPath} is not a saved teacher (format ${JSON.stringify(index.format)})`);
  }
  if (index.formatVersion !== TEACHER_FORMAT_VERSION) {
    fail(
      "input",
      `${indexPath} has format version ${index.formatVersion}; this toolkit reads version ${TEACHER_FORMAT_VERSION}`,
    );
  }
  const readArray = async (a: SavedArray): Promise<Float32Array> => {
    const path = join(dir, a.file);
    const bytes = await Deno.readFile(path).catch(() =>
      fail("input", `${path} is missing`, "the saved teacher is incomplete; save it again")
    );
    const expected = a.shape.reduce((p, x) => p * x, 1);
    if (bytes.byteLength !== 4 * expected) {
      fail(
        "input",
        `${path} has ${bytes.byteLength} bytes, expected ${4 * expected} for shape [${a.shape.join(", ")}]`,
      );
    }
    if (await sha256Hex(bytes) !== a.sha256) {
      fail(
        "checksum",
        `${path} does not match its sha256 in ${TEACHER_JSON}`,
        "the file was damaged; save the teacher again",
      );
    }
    return new Float32Array(bytes.slice().buffer);
  };
  const readNet = async (net: SavedNet): Promise<MlpWeights> => {
    const weights: Float32Array[] = [], biases: Float32Array[] = [];
    for (const layer of net.layers) {
      weights.push(await readArray(layer.weight));
      biases.push(await readArray(layer.bias));
    }
    return { sizes: net.sizes, weights, biases };
  };
  const actorNet = await readNet(index.actor);
  const { encoding: _encoding, provenance: _provenance, ...facts } = index;
  const artifact: TeacherArtifact = {
    ...facts,
    stateMean: Float32Array.from(index.stateMean),
    stateStd: Float32Array.from(index.stateStd),
    actor: index.actor.kind === "tanh-gaussian"
      ? { kind: "tanh-gaussian", net: actorNet, head: index.actor.head }
      : { kind: "deterministic", net: actorNet },
    critic: await readNet(index.critic),
    evaluation: index.evaluation && {
      ...index.evaluation,
      normalizedScores: Float64Array.from(index.evaluation.normalizedScores),
      returns: Float64Array.from(index.evaluation.returns),
    },
  };
  validateArtifact(artifact);
  return artifact;
}
