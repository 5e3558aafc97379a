/**
 * Turning the authors' CORL Cal-QL checkpoints (read by `readTorchCheckpoint`) into teachers.
 * @module
 */

import { fail } from "../../core/errors.ts";
import { fromTorchLinear, type MlpWeights } from "../../numerics/mlp.ts";
import type { EnvName } from "../../envs/specs.ts";
import { CORL_GAUSSIAN_HEAD, TEACHER_FORMAT, TEACHER_FORMAT_VERSION, type TeacherArtifact } from "./model.ts";
import { type TorchCheckpoint, TorchTensor } from "./torch_checkpoint.ts";

/** What the importer knows besides the checkpoint. */
export interface CorlImportOptions {
  /** Shown in messages and stored as the artifact's source. */
  readonly file: string;
  /** The environment, when known. */
  readonly env: EnvName | null;
  /** The dataset's statistics (the networks were trained on normalized states); else identity. */
  readonly stateMean?: Float32Array;
  /** See `stateMean`. */
  readonly stateStd?: Float32Array;
  /** The action bound (default 1). */
  readonly maxAction?: number;
}

function shapeText(shape: readonly number[]): string {
  return `[${shape.join(", ")}]`;
}

/**
 * The `nn.Sequential` of `Linear`s under `prefix` in a state dict: `<prefix>.<k>.weight` [out, in]
 * and `.bias` [out] for k = 0, 2, 4, … (ReLUs between). Checks that the keys are all there and that
 * shapes chain; errors name the key and both shapes.
 */
function readSequential(
  ckpt: TorchCheckpoint,
  dict: Map<unknown, unknown>,
  where: string,
  prefix: string,
): MlpWeights {
  const indices = [...dict.keys()]
    .map((k) =>
      String(k).match(
        new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\.(\\d+)\\.(weight|bias)$`),
      )
    )
    .filter((m): m is RegExpMatchArray => m !== null)
    .map((m) => Number(m[1]));
  const last = Math.max(-1, ...indices);
  if (last < 0) {
    fail(
      "input",
      `${where}.${prefix}.0.weight is missing (no ${prefix}.* layers in ${where})`,
      "is this a CORL Cal-QL checkpoint?",
    );
  }
  const tensorAt = (key: string): TorchTensor => {
    const t = dict.get(key);
    if (t === undefined) {
      fail("input", `${where}.${key} is missing`, "the checkpoint does not have CORL's layout");
    }
    if (!(t instanceof TorchTensor)) fail("input", `${where}.${key} is not a tensor`);
    return t;
  };
  const sizes: number[] = [];
  const weights: Float32Array[] = [], biases: Float32Array[] = [];
  for (let k = 0; k <= last; k += 2) {
    const w = tensorAt(`${prefix}.${k}.weight`);
    const b = tensorAt(`${prefix}.${k}.bias`);
    if (w.shape.length !== 2) {
      fail("input", `${where}.${prefix}.${k}.weight has shape ${shapeText(w.shape)}, expected [out, in]`);
    }
    const [out, inp] = w.shape;
    if (sizes.length > 0 && inp !== sizes[sizes.length - 1]) {
      fail(
        "input",
        `${where}.${prefix}.${k}.weight has shape ${shapeText(w.shape)}, expected [${out}, ${
          sizes[sizes.length - 1]
        }] (the previous layer has ${sizes[sizes.length - 1]} outputs)`,
      );
    }
    if (b.shape.length !== 1 || b.shape[0] !== out) {
      fail("input", `${where}.${prefix}.${k}.bias has shape ${shapeText(b.shape)}, expected [${out}]`);
    }
    if (sizes.length === 0) sizes.push(inp);
    sizes.push(out);
    weights.push(fromTorchLinear(finiteValues(ckpt, w, `${where}.${prefix}.${k}.weight`), out, inp));
    biases.push(finiteValues(ckpt, b, `${where}.${prefix}.${k}.bias`));
  }
  const odd = indices.find((i) => i % 2 === 1);
  if (odd !== undefined) {
    fail("input", `${where}.${prefix}.${odd}.* is unexpected: CORL's Linear layers sit at even indices`);
  }
  return { sizes, weights, biases };
}

function stateDict(root: unknown, key: string, file: string): Map<unknown, unknown> {
  if (!(root instanceof Map)) {
    fail(
      "input",
      `${file} does not hold a dict at the top level`,
      "is this a CORL checkpoint (trainer.state_dict())?",
    );
  }
  const d = root.get(key);
  if (d === undefined) {
    fail(
      "input",
      `${file} has no "${key}" state dict (top-level keys: ${[...root.keys()].map(String).join(", ")})`,
      "expected CORL's layout: actor, critic1, critic2, …",
    );
  }
  if (!(d instanceof Map)) fail("input", `${file}: "${key}" is not a state dict`);
  return d;
}

function scalarAt(ckpt: TorchCheckpoint, dict: Map<unknown, unknown>, where: string, key: string): number {
  const t = dict.get(key);
  if (t === undefined) {
    fail("input", `${where}.${key} is missing`, "CORL's TanhGaussianPolicy stores it as a Scalar parameter");
  }
  if (!(t instanceof TorchTensor)) fail("input", `${where}.${key} is not a tensor`);
  if (t.numel !== 1) fail("input", `${where}.${key} has shape ${shapeText(t.shape)}, expected a scalar []`);
  return finiteValues(ckpt, t, `${where}.${key}`)[0];
}

/** The tensor's values, refused (naming `where` and the first bad entry) if any is NaN or infinite. */
function finiteValues(ckpt: TorchCheckpoint, t: TorchTensor, where: string): Float32Array {
  const v = ckpt.values(t);
  const bad = v.findIndex((x) => !Number.isFinite(x));
  if (bad >= 0) {
    const count = v.reduce((n, x) => n + (Number.isFinite(x) ? 0 : 1), 0);
    fail(
      "input",
      `${where} holds ${count} non-finite value(s) (the first, ${
        v[bad]
      }, at flat index ${bad} of ${v.length})`,
      "the checkpoint's training diverged or the file is damaged; import a finite checkpoint",
    );
  }
  return v;
}

/**
 * A teacher from a CORL Cal-QL checkpoint: `actor` (TanhGaussianPolicy: `base_network.{0,2,4,6}`,
 * last layer 2·|A| outputs μ then log σ, scalars `log_std_multiplier.constant` and
 * `log_std_offset.constant`) and `critic1` (`network.{0,2,4}`, input concat(s, a), one output).
 */
export function teacherFromCorl(ckpt: TorchCheckpoint, options: CorlImportOptions): TeacherArtifact {
  const { file } = options;
  const actorDict = stateDict(ckpt.root, "actor", file);
  const criticDict = stateDict(ckpt.root, "critic1", file);
  const actor = readSequential(ckpt, actorDict, "actor", "base_network");
  const obsDim = actor.sizes[0];
  const actorOut = actor.sizes[actor.sizes.length - 1];
  if (actorOut % 2 !== 0) {
    fail(
      "input",
      `actor.base_network.${
        2 * (actor.sizes.length - 2)
      }.weight has ${actorOut} outputs; a tanh-Gaussian actor has 2·|A| (mean and log-std)`,
    );
  }
  const actDim = actorOut / 2;
  const critic = readSequential(ckpt, criticDict, "critic1", "network");
  if (critic.sizes[0] !== obsDim + actDim) {
    fail(
      "input",
      `critic1.network.0.weight has shape [${critic.sizes[1]}, ${critic.sizes[0]}], expected [${
        critic.sizes[1]
      }, ${obsDim + actDim}] (the actor has ${obsDim} states and ${actDim} actions)`,
    );
  }
  if (critic.sizes[critic.sizes.length - 1] !== 1) {
    fail(
      "input",
      `critic1.network.${2 * (critic.sizes.length - 2)}.weight has ${
        critic.sizes[critic.sizes.length - 1]
      } outputs, expected 1`,
    );
  }
  const head = {
    ...CORL_GAUSSIAN_HEAD,
    logStdMultiplier: scalarAt(ckpt, actorDict, "actor", "log_std_multiplier.constant"),
    logStdOffset: scalarAt(ckpt, actorDict, "actor", "log_std_offset.constant"),
  };
  const stateMean = options.stateMean ?? new Float32Array(obsDim);
  const stateStd = options.stateStd ?? new Float32Array(obsDim).fill(1);
  if (stateMean.length !== obsDim || stateStd.length !== obsDim) {
    fail(
      "input",
      `the dataset has ${stateMean.length}-dimensional states, the checkpoint's actor takes ${obsDim}`,
      "import with the dataset the teacher was trained on",
    );
  }
  const root = ckpt.root as Map<unknown, unknown>;
  const totalIt = root.get("total_it");
  return {
    format: TEACHER_FORMAT,
    formatVersion: TEACHER_FORMAT_VERSION,
    algorithm: "calql",
    source: `imported:${file.split("/").pop()}`,
    env: options.env,
    obsDim,
    actDim,
    maxAction: options.maxAction ?? 1,
    stateMean,
    stateStd,
    actor: { kind: "tanh-gaussian", net: actor, head },
    critic,
    training: { steps: typeof totalIt === "number" ? totalIt : 0, seconds: 0 },
    evaluation: null,
  };
}
