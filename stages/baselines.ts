/**
 * The `baselines` stage: what a distilled set is compared with on one dataset, scored once for all
 * methods and seeds (they depend on the dataset, the student and the set size only):
 *
 * - Random selection: for repeat r, N random real pairs (`randomRealSet(dataset, N, r)`, the very
 *   set a distillation of seed r starts from), trained like a synthetic set and scored with the
 *   students and episodes of seed r — common random numbers with every method's seed r;
 * - BC on the whole dataset: `bcPolicies` students of the same architecture trained by minibatch Adam
 *   (CORL's BC), `bcSteps` steps (0: Table 4 of the OBD paper for this dataset's size).
 *
 * The teacher's row comes from the teacher stage's own evaluation of π*.
 * @module
 */

import { fail } from "../core/errors.ts";
import { defineStage, type Stage, type StageContext } from "../core/stage.ts";
import { type D4rlEnvName, ENV_NAMES, envBody, type EnvName } from "../envs/specs.ts";
import { deriveSeed, Rng } from "../numerics/random.ts";
import { mean } from "../numerics/statistics.ts";
import { normalizeStates, type OfflineDataset } from "./load.ts";
import {
  type EvaluationSize,
  meanScore,
  type PolicyScores,
  RolloutTally,
  scoreSet,
  scoreUnits,
} from "./scores.ts";
import {
  disposeStudent,
  ensemblePolicy,
  type StudentConfig,
  type StudentProtocol,
  studentProtocol,
  validateStudentConfig,
} from "./student.ts";
import { fitStudent, type TrainingPairs } from "./student_fit.ts";
import { randomRealSet } from "./synset.ts";

/** What the baselines stage computes. */
export interface BaselinesConfig extends EvaluationSize {
  /** Score Random selection. */
  readonly randomSelection: boolean;
  /** Score BC on the whole dataset. */
  readonly bc: boolean;
  /** N of the synthetic sets they are compared with (Random selection draws N pairs). */
  readonly synsetSize: number;
  /** Random selection: repeats (the paper: 10); repeat r pairs with distillation seed r. */
  readonly randomRepeats: number;
  /** BC on the whole dataset: gradient steps (0: Table 4 of the paper for this dataset's size). */
  readonly bcSteps: number;
  /** Minibatch size of BC on the whole dataset. */
  readonly bcBatchSize: number;
  /** Adam learning rate of BC on the whole dataset. */
  readonly bcLr: number;
  /** Independent BC policies. */
  readonly bcPolicies: number;
  /** The student (its architecture for BC; the whole protocol for Random selection). */
  readonly student: StudentConfig;
}

/** The stage's output. */
export interface BaselinesReport {
  /** Environment of the evaluation. */
  readonly env: EnvName;
  /** Source file, its sha256 and its number of transitions. */
  readonly dataset: { readonly file: string; readonly sha256: string; readonly n: number };
  /** N of the Random selection sets. */
  readonly synsetSize: number;
  /** The stage's config. */
  readonly config: BaselinesConfig;
  /** The student protocol in this environment. */
  readonly protocol: StudentProtocol;
  /** One entry per repeat r (its `seed` is r), when run. */
  readonly randomSelection?: PolicyScores[];
  /** BC on the whole dataset, one unit per policy, when run. */
  readonly bc?: PolicyScores & { readonly steps: number; readonly finalLoss: number };
  /** Rollout throughput, policy inference included. */
  readonly throughput: {
    readonly envSteps: number;
    readonly seconds: number;
    readonly stepsPerSecond: number;
  };
  /** Wall-clock duration of the stage, in seconds. */
  readonly seconds: number;
}

/**
 * Gradient steps of BC on the whole dataset from the OBD paper's Table 4 (steps to convergence by
 * dataset size): the row whose size is nearest to `n` on a log scale.
 */
export function table4BcSteps(env: EnvName, n: number): number {
  const rows = TABLE4[envBody(env)];
  if (!rows) fail("input", `unknown environment "${env}"`, `choose one of ${ENV_NAMES.join(", ")}`);
  let best = rows[0];
  for (const row of rows) if (Math.abs(Math.log(row[0] / n)) < Math.abs(Math.log(best[0] / n))) best = row;
  return best[1];
}

/** Table 4 of the OBD paper: (dataset size, BC steps to converge) — M-R, M, M-E sizes. */
const TABLE4: Readonly<Record<D4rlEnvName, readonly (readonly [number, number])[]>> = {
  halfcheetah: [[2e5, 40_000], [1e6, 25_000], [2e6, 100_000]],
  hopper: [[4e5, 80_000], [1e6, 50_000], [2e6, 100_000]],
  walker2d: [[3e5, 60_000], [1e6, 50_000], [2e6, 125_000]],
};

/** Refuses a config that cannot work, naming the setting (`evaluate.` settings, as the user wrote them). */
export function validateBaselinesConfig(config: BaselinesConfig): void {
  for (
    const key of ["students", "episodes", "randomRepeats", "bcBatchSize", "bcPolicies", "synsetSize"] as const
  ) {
    const v = config[key];
    if (!Number.isInteger(v) || v < 1) {
      fail(
        "config",
        `${key === "synsetSize" ? "distill" : "evaluate"}.${key} = ${v} must be a positive integer`,
      );
    }
  }
  if (!Number.isInteger(config.bcSteps) || config.bcSteps < 0) {
    fail("config", `evaluate.bcSteps = ${config.bcSteps} must be 0 (Table 4) or a positive integer`);
  }
  if (!(config.bcLr > 0) || !Number.isFinite(config.bcLr)) {
    fail("config", `evaluate.bcLr = ${config.bcLr} must be a positive number`);
  }
  validateStudentConfig(config.student);
}

/** Scores the baselines of one dataset. */
export async function evaluateBaselines(
  inputs: { readonly dataset: OfflineDataset },
  config: BaselinesConfig,
  ctx: StageContext,
): Promise<BaselinesReport> {
  const started = performance.now();
  validateBaselinesConfig(config);
  const { dataset } = inputs;
  if (config.randomSelection && config.synsetSize > dataset.n) {
    fail(
      "config",
      `random selection of ${config.synsetSize} pairs needs a dataset of at least that many transitions (${dataset.n})`,
      "choose a smaller distill.synsetSize",
    );
  }
  const protocol = studentProtocol(config.student, dataset.env);
  const tally = new RolloutTally(dataset.reference);
  const total = (config.randomSelection ? config.randomRepeats * config.students : 0) +
    (config.bc ? config.bcPolicies : 0);
  const bar = ctx.progress("baselines", total);
  let done = 0;
  const tick = (part: string) => bar.update(++done, { part });
  const normalized = normalizeStates(dataset.observations, dataset);

  let randomSelection: PolicyScores[] | undefined;
  if (config.randomSelection) {
    randomSelection = [];
    for (let r = 0; r < config.randomRepeats; r++) {
      const set = randomRealSet(dataset, config.synsetSize, r, normalized);
      randomSelection.push(await scoreSet(set, protocol, config, r, tally, () => tick("random selection")));
    }
    const all = mean(randomSelection.map(meanScore));
    ctx.metric("normalizedScore.randomSelection", all);
    ctx.log({
      event: "evaluation",
      method: "randomSelection",
      normalizedScore: all,
      repeats: config.randomRepeats,
    });
  }

  let bc: BaselinesReport["bc"];
  if (config.bc) {
    const steps = config.bcSteps || table4BcSteps(dataset.env, dataset.n);
    const pairs: TrainingPairs = {
      n: dataset.n,
      obsDim: dataset.obsDim,
      actDim: dataset.actDim,
      states: normalized,
      actions: dataset.actions,
    };
    const seed = deriveSeed(0, "bc");
    const scores = await scoreUnits(
      dataset.env,
      config.bcPolicies,
      config.episodes,
      seed,
      (p) => {
        const student = fitStudent(pairs, {
          architecture: { kind: "mlp", hidden: protocol.hidden },
          optimizer: { kind: "adam", learningRate: config.bcLr },
          steps,
          maxAction: protocol.maxAction,
          batchSize: config.bcBatchSize,
        }, new Rng(deriveSeed(seed, "policy", p)));
        return {
          policy: ensemblePolicy([student], dataset),
          dispose: () => disposeStudent(student),
          trainLoss: student.finalLoss,
        };
      },
      tally,
      () => tick("bc"),
    );
    bc = { ...scores, steps, finalLoss: mean(scores.trainLoss ?? []) };
    ctx.metric("normalizedScore.bc", meanScore(bc));
    ctx.log({
      event: "evaluation",
      method: "bc",
      normalizedScore: meanScore(bc),
      steps,
      finalLoss: bc.finalLoss,
    });
  }
  bar.finish();
  return {
    env: dataset.env,
    dataset: { file: dataset.file, sha256: dataset.sha256, n: dataset.n },
    synsetSize: config.synsetSize,
    config,
    protocol,
    ...(randomSelection ? { randomSelection } : {}),
    ...(bc ? { bc } : {}),
    throughput: { envSteps: tally.steps, seconds: tally.seconds, stepsPerSecond: tally.stepsPerSecond },
    seconds: (performance.now() - started) / 1000,
  };
}

/** The baselines stage: `{ dataset }` → {@link BaselinesReport}. */
export const baselinesStage: Stage<{ dataset: OfflineDataset }, BaselinesConfig, BaselinesReport> =
  defineStage({
    name: "baselines",
    version: "4",
    validate: validateBaselinesConfig,
    compute: (inputs: { dataset: OfflineDataset }, config: BaselinesConfig, ctx: StageContext) =>
      evaluateBaselines(inputs, config, ctx),
  });
