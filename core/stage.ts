/**
 * What a stage is: a pure function from upstream values and a config to an output value, with a
 * name and a code version. Effects a stage needs (progress, metrics, checkpoints to resume from,
 * how many threads it may use) come in through `StageContext`; caching, hashing, files and the
 * environment stay in the runtime.
 * @module
 */

import * as TE from "fp-ts/TaskEither.js";
import { type PipelineError, toPipelineError } from "./errors.ts";
import { type ProgressFactory, silentProgress } from "./progress.ts";

/** Services the runtime lends to a running stage. */
export interface StageContext {
  /** Progress bars / periodic lines for long loops. */
  readonly progress: ProgressFactory;
  /** Appends a record to the run's JSON-lines metrics log (stamped with the stage name). */
  readonly log: (record: Readonly<Record<string, unknown>>) => void;
  /** Records a summary metric in the artifact's manifest (and the log). */
  readonly metric: (name: string, value: number | string) => void;
  /** The tensor backend in use, as recorded in manifests. */
  readonly backend: string;
  /** Worker threads the stage may compute on (1: this thread only); never part of a cache key. */
  readonly threads: number;
  /**
   * The checkpoint of this (stage, key): survives an interrupted run and is removed once the output
   * is cached, so a long stage resumes where it stopped (see `core/loop.ts`).
   */
  readonly checkpoint: CheckpointStore;
}

/** Where a stage saves and finds its checkpoint. */
export interface CheckpointStore {
  /** The last value saved, or `undefined` when there is none (or it failed its checksums). */
  load(): Promise<unknown | undefined>;
  /** Replaces the checkpoint with `value` (objects with typed arrays), atomically. */
  save(value: unknown): Promise<void>;
}

/** A pipeline stage. `I` maps input names to upstream output values. */
export interface Stage<I, C, O> {
  /** Directory name in the cache and label in logs (`load`, `teacher`, …). */
  readonly name: string;
  /**
   * Bump when the code changes what the stage computes: it is part of the cache key.
   * `tests/stage_versions_test.ts` fails when a stage's sources change and this does not.
   */
  readonly version: string;
  /**
   * Top-level settings that only set a cadence (logging, checkpoints, progress): left out of the
   * cache key, so changing them reuses the entry. They must not change the output.
   */
  readonly cadence?: readonly (keyof C & string)[];
  /**
   * Refuses a config that cannot work, naming the setting (throws a `PipelineFailure`). Studies run
   * it for every stage before the first one computes, so a bad setting costs no work.
   */
  readonly validate?: (config: C) => void;
  /** The computation. Failures are values in the `Left`, never exceptions. */
  // deno-doc-ignore private-type-ref -- TaskEither is fp-ts's own type
  readonly run: (inputs: I, config: C, ctx: StageContext) => TE.TaskEither<PipelineError, O>;
}

/**
 * Defines a stage from an async function. Inside `compute`, deep code may `fail(...)` (throwing a
 * typed `PipelineFailure`); this wrapper is the boundary that turns any exception into a `Left`.
 */
export function defineStage<I, C, O>(spec: {
  readonly name: string;
  readonly version: string;
  readonly cadence?: readonly (keyof C & string)[];
  readonly validate?: (config: C) => void;
  readonly compute: (inputs: I, config: C, ctx: StageContext) => Promise<O> | O;
}): Stage<I, C, O> {
  return {
    name: spec.name,
    version: spec.version,
    ...(spec.cadence ? { cadence: spec.cadence } : {}),
    ...(spec.validate ? { validate: spec.validate } : {}),
    run: (inputs, config, ctx) =>
      TE.tryCatch(
        async () => await spec.compute(inputs, config, ctx),
        (caught) => ({ ...toPipelineError(caught), stage: spec.name }),
      ),
  };
}

/** The part of `config` in a stage's cache key: all of it but its cadence settings. */
export function keyConfig<C>(stage: Pick<Stage<unknown, C, unknown>, "cadence">, config: C): unknown {
  if (!stage.cadence?.length || config === null || typeof config !== "object") return config;
  return Object.fromEntries(
    Object.entries(config).filter(([k]) => !stage.cadence!.includes(k as keyof C & string)),
  );
}

/** A checkpoint store in memory (values are copied on save and load). */
export function memoryCheckpoint(): CheckpointStore {
  let saved: unknown;
  return {
    load: () => Promise.resolve(saved === undefined ? undefined : structuredClone(saved)),
    save: (value) => Promise.resolve(void (saved = structuredClone(value))),
  };
}

/**
 * A context for running a stage outside a runtime (benchmarks, notebooks, tests): silent progress,
 * no log, one thread, checkpoints in memory; `overrides` replace any of these.
 */
export function standaloneContext(overrides: Partial<StageContext> = {}): StageContext {
  return {
    progress: silentProgress,
    log: () => {},
    metric: () => {},
    backend: "unknown",
    threads: 1,
    checkpoint: memoryCheckpoint(),
    ...overrides,
  };
}
