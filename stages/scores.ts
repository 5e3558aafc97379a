/**
 * How policies are scored: `units` policies (students, ensembles, BC runs) rolled out for `episodes`
 * episodes each, every episode's D4RL normalized return kept, so that tables can give intervals and
 * compare methods episode for episode.
 *
 * Common random numbers: the u-th student of an evaluation with seed k is initialized from, and its
 * episodes reset from, streams that depend on (k, u) only — never on the method, the set or the
 * distillation step. Every method of a study therefore meets the same initial students and the
 * same start states at a given seed, so a difference between two methods is a difference between
 * their sets, and the noise the two share cancels in a paired comparison.
 * @module
 */

import type { EnvName } from "../envs/specs.ts";
import { type BatchPolicy, evaluatePolicy, type Evaluation, type ScoreReference } from "../envs/rollout.ts";
import { disposeMlp } from "../numerics/mlp.ts";
import { deriveSeed, Rng } from "../numerics/random.ts";
import { mean } from "../numerics/statistics.ts";
import { ensemblePolicy, mlpStudent, type StudentProtocol, trainStudent } from "./student.ts";
import { type SyntheticSet, validateSyntheticSet } from "./synset.ts";

/** Students and episodes of one evaluation point (the settings `evaluate.students`, `evaluate.episodes`). */
export interface EvaluationSize {
  /** Fresh students trained per evaluation point. */
  readonly students: number;
  /** Episodes each student runs. */
  readonly episodes: number;
}

/** What an evaluation measured: unit u's episode e at `normalized[u][e]`. */
export interface PolicyScores {
  /** The seed of the common random numbers (a distillation seed, a Random selection repeat). */
  readonly seed: number;
  /** D4RL normalized return (percent) of every episode, by unit. */
  readonly normalized: number[][];
  /** Undiscounted return of every episode, by unit. */
  readonly returns: number[][];
  /** Each unit's BC loss on what it was trained on, where it was trained. */
  readonly trainLoss?: number[];
  /** Wall-clock seconds of training and rollouts. */
  readonly seconds: number;
}

/** The mean normalized return over every episode of every unit. */
export function meanScore(scores: Pick<PolicyScores, "normalized">): number {
  return mean(scores.normalized.flat());
}

/** The mean of each unit's episodes. */
export function unitMeans(scores: Pick<PolicyScores, "normalized">): number[] {
  return scores.normalized.map(mean);
}

/** The seed that initializes student `unit` of an evaluation with seed `seed`. */
export function studentSeed(seed: number, unit: number): number {
  return deriveSeed(seed, "student", unit);
}

/** The seed of the episodes' reset noise of unit `unit` of an evaluation with seed `seed`. */
export function episodeSeed(seed: number, unit: number): number {
  return deriveSeed(seed, "episodes", unit);
}

/** Environment steps and seconds spent in rollouts (policy inference included). */
export class RolloutTally {
  /** `reference`: the dataset's own reference returns, when it has them (see `evaluatePolicy`). */
  constructor(readonly reference?: ScoreReference) {}

  /** Environment steps taken. */
  steps = 0;
  /** Seconds spent. */
  seconds = 0;

  /** {@link evaluatePolicy}, counted. */
  async rollout(env: EnvName, policy: BatchPolicy, episodes: number, seed: number): Promise<Evaluation> {
    const started = performance.now();
    const result = await evaluatePolicy(env, policy, episodes, seed, this.reference);
    this.seconds += (performance.now() - started) / 1000;
    this.steps += result.lengths.reduce((a, b) => a + b, 0);
    return result;
  }

  /** Steps per second so far (0 before any). */
  get stepsPerSecond(): number {
    return this.seconds > 0 ? this.steps / this.seconds : 0;
  }
}

/** One unit to score: its policy, a way to free it, and its training loss if it was trained. */
export interface ScoredUnit {
  /** The unit's policy on raw observations. */
  readonly policy: BatchPolicy;
  /** Frees the unit's tensors. */
  readonly dispose: () => void;
  /** Its training loss, if trained. */
  readonly trainLoss?: number;
}

/**
 * Scores `units` policies made by `make(u)` for `episodes` episodes each, unit u's episodes reset
 * from {@link episodeSeed}(seed, u). `onUnit` is called after each unit (progress).
 */
export async function scoreUnits(
  env: EnvName,
  units: number,
  episodes: number,
  seed: number,
  make: (unit: number) => ScoredUnit,
  tally: RolloutTally,
  onUnit: () => void = () => {},
): Promise<PolicyScores> {
  const started = performance.now();
  const normalized: number[][] = [], returns: number[][] = [], trainLoss: number[] = [];
  for (let u = 0; u < units; u++) {
    const unit = make(u);
    try {
      const result = await tally.rollout(env, unit.policy, episodes, episodeSeed(seed, u));
      normalized.push(Array.from(result.normalizedScores));
      returns.push(Array.from(result.returns));
      if (unit.trainLoss !== undefined) trainLoss.push(unit.trainLoss);
    } finally {
      unit.dispose();
    }
    onUnit();
  }
  return {
    seed,
    normalized,
    returns,
    ...(trainLoss.length === units ? { trainLoss } : {}),
    seconds: (performance.now() - started) / 1000,
  };
}

/**
 * The papers' protocol on one set: `size.students` fresh students, student u initialized from
 * {@link studentSeed}(seed, u) and trained with the protocol, `size.episodes` episodes each.
 * Deterministic for (set, protocol, size, seed).
 */
export async function scoreSet(
  set: SyntheticSet,
  protocol: StudentProtocol,
  size: EvaluationSize,
  seed: number,
  tally: RolloutTally,
  onUnit?: () => void,
): Promise<PolicyScores> {
  validateSyntheticSet(set);
  return await scoreUnits(
    set.env,
    size.students,
    size.episodes,
    seed,
    (u) => {
      const { params, finalLoss } = trainStudent(set, protocol, new Rng(studentSeed(seed, u)));
      return {
        policy: ensemblePolicy([mlpStudent(params, protocol.maxAction)], set),
        dispose: () => disposeMlp(params),
        trainLoss: finalLoss,
      };
    },
    tally,
    onUnit,
  );
}
