/**
 * The diversity study's students and their evaluations, two cached stages:
 *
 * - `subset-students`: S fresh students trained by BC on a subset at one *level* — a student
 *   (hidden layers, width) trained by full-batch SGD for `steps` steps — with each one's final
 *   training loss. Levels are how the study sets the final loss: short training or a narrow
 *   network leaves it large, long training of a wide one drives it down. Student u is initialized
 *   from `studentSeed(seed, u)` (`scores.ts`), so every subset meets the same initial students at
 *   a level (common random numbers: differences between subsets are paired).
 * - `subset-evaluation`: those students rolled out, E episodes each, episodes of student u reset
 *   from `episodeSeed(seed, u)` — the same start states for every subset.
 *
 * Training is `fitStudent` (`student_fit.ts`) with plain SGD, which on the default MLP agrees with the
 * distillation's inner loop but keeps no trajectory, so long training costs no memory.
 * @module
 */

import { fail } from "../core/errors.ts";
import { defineStage, type Stage } from "../core/stage.ts";
import { mlpTensors, type MlpWeights, readMlp } from "../numerics/mlp.ts";
import { Rng } from "../numerics/random.ts";
import { mean } from "../numerics/statistics.ts";
import { meanScore, type PolicyScores, RolloutTally, scoreUnits, studentSeed } from "./scores.ts";
import {
  disposeStudent,
  ensemblePolicy,
  mlpStudent,
  type StudentConfig,
  validateStudentConfig,
} from "./student.ts";
import { fitStudent, setPairs } from "./student_fit.ts";
import { ENV_SPECS } from "../envs/specs.ts";
import type { Subset } from "./subsets.ts";
import { validateSyntheticSet } from "./synset.ts";

/** One training level: the student's network and how long it trains (full-batch SGD). */
export type StudentLevel = StudentConfig;

/** Settings of the students stage. */
export interface SubsetStudentsConfig {
  /** The network and its training. */
  readonly level: StudentLevel;
  /** S, students trained. */
  readonly students: number;
  /** Seed of the students' initializations (common to every subset). */
  readonly seed: number;
}

/** Trained students of one subset at one level. */
export interface SubsetStudents {
  /** Each student's weights. */
  readonly weights: MlpWeights[];
  /** Each student's BC loss on the subset before training. */
  readonly initialLoss: number[];
  /** Each student's BC loss on the subset after training. */
  readonly finalLoss: number[];
  /** c of the students' c·tanh output. */
  readonly maxAction: number;
}

/** Fails with "config" on the first unusable setting, naming it. */
export function validateSubsetStudentsConfig(config: SubsetStudentsConfig): void {
  validateStudentConfig(config.level, "level");
  if (!Number.isInteger(config.students) || config.students < 1) {
    fail("config", `students = ${config.students} must be a positive integer`, "e.g. --students 5");
  }
  if (!Number.isInteger(config.seed) || config.seed < 0) {
    fail("config", `seed = ${config.seed} must be a non-negative integer`);
  }
}

/** Trains the S students of `config` on `subset`. Deterministic for its arguments. */
export function trainSubsetStudents(
  subset: Subset,
  config: SubsetStudentsConfig,
  onStudent: (done: number) => void = () => {},
): SubsetStudents {
  validateSubsetStudentsConfig(config);
  validateSyntheticSet(subset, { what: `the ${subset.kind} subset` });
  const { level } = config;
  const maxAction = ENV_SPECS[subset.env].actionHigh;
  const pairs = setPairs(subset);
  const weights: MlpWeights[] = [], initialLoss: number[] = [], finalLoss: number[] = [];
  for (let u = 0; u < config.students; u++) {
    const student = fitStudent(pairs, {
      architecture: { kind: "mlp", hidden: Array(level.hiddenLayers).fill(level.width) },
      optimizer: { kind: "sgd", learningRate: level.learningRate },
      steps: level.steps,
      maxAction,
    }, new Rng(studentSeed(config.seed, u)));
    try {
      if (!Number.isFinite(student.finalLoss)) {
        fail(
          "numeric",
          `student ${u} on the ${subset.kind} subset diverged (training loss ${student.finalLoss})`,
          "lower level.learningRate",
        );
      }
      weights.push(readMlp(student.params));
      initialLoss.push(student.initialLoss);
      finalLoss.push(student.finalLoss);
    } finally {
      disposeStudent(student);
    }
    onStudent(u + 1);
  }
  return { weights, initialLoss, finalLoss, maxAction };
}

/** The students stage: `{ subset }` → {@link SubsetStudents}. */
export const subsetStudentsStage: Stage<{ subset: Subset }, SubsetStudentsConfig, SubsetStudents> =
  defineStage<{ subset: Subset }, SubsetStudentsConfig, SubsetStudents>({
    name: "subset-students",
    version: "1",
    validate: validateSubsetStudentsConfig,
    compute: ({ subset }, config, ctx) => {
      const bar = ctx.progress(`students ${subset.kind}`, config.students);
      const out = trainSubsetStudents(subset, config, (done) => bar.update(done));
      bar.finish();
      ctx.metric("meanFinalLoss", mean(out.finalLoss));
      return out;
    },
  });

/** Settings of the evaluation stage. */
export interface SubsetEvaluationConfig {
  /** E, episodes per student. */
  readonly episodes: number;
  /** Seed of the episodes' reset noise (the students' seed, so both streams pair across subsets). */
  readonly seed: number;
}

/** Fails with "config" on the first unusable setting, naming it. */
export function validateSubsetEvaluationConfig(config: SubsetEvaluationConfig): void {
  if (!Number.isInteger(config.episodes) || config.episodes < 1) {
    fail("config", `episodes = ${config.episodes} must be a positive integer`, "e.g. --episodes 5");
  }
  if (!Number.isInteger(config.seed) || config.seed < 0) {
    fail("config", `seed = ${config.seed} must be a non-negative integer`);
  }
}

/** Rolls out every student of `students`, E episodes each; the scores carry each one's training loss. */
export async function evaluateSubsetStudents(
  subset: Subset,
  students: SubsetStudents,
  config: SubsetEvaluationConfig,
  onStudent: () => void = () => {},
): Promise<PolicyScores> {
  validateSubsetEvaluationConfig(config);
  const tally = new RolloutTally();
  if (students.weights.length !== students.finalLoss.length) {
    fail("input", "the students' weights and losses disagree in number", "recompute the students stage");
  }
  return await scoreUnits(
    subset.env,
    students.weights.length,
    config.episodes,
    config.seed,
    (u) => {
      const student = mlpStudent(mlpTensors(students.weights[u]), students.maxAction);
      return {
        policy: ensemblePolicy([student], subset),
        dispose: () => disposeStudent(student),
        trainLoss: students.finalLoss[u],
      };
    },
    tally,
    onStudent,
  );
}

/** The evaluation stage: `{ subset, students }` → {@link PolicyScores} with training losses. */
export const subsetEvaluationStage: Stage<
  { subset: Subset; students: SubsetStudents },
  SubsetEvaluationConfig,
  PolicyScores
> = defineStage<{ subset: Subset; students: SubsetStudents }, SubsetEvaluationConfig, PolicyScores>({
  name: "subset-evaluation",
  version: "1",
  validate: validateSubsetEvaluationConfig,
  compute: async ({ subset, students }, config, ctx) => {
    const bar = ctx.progress(`episodes ${subset.kind}`, students.weights.length);
    let done = 0;
    const scores = await evaluateSubsetStudents(subset, students, config, () => bar.update(++done));
    bar.finish();
    ctx.metric("normalizedScore", meanScore(scores));
    return scores;
  },
});
