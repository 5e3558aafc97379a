/**
 * What a stage is: a pure function from upstream values and a config to an output value, with a
 * name and a code version. Effects a stage needs (progress, metrics, a work directory for resumable
 * checkpoints) come in through `StageContext`; caching, hashing and files stay in the runtime.
 * @module
 */

import * as TE from "fp-ts/TaskEither.js";
import { type PipelineError, toPipelineError } from "./errors.ts";
import type { ProgressFactory } from "./progress.ts";

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
  /**
   * A directory private to this (stage, key) that survives an interrupted run and is removed once
   * the output is cached: the place for checkpoints that let a long stage resume.
   */
  readonly workDir: string;
}

/** A pipeline stage. `I` maps input names to upstream output values. */
export interface Stage<I, C, O> {
  /** Directory name in the cache and label in logs (`load`, `teacher`, …). */
  readonly name: string;
  /** Bump when the code changes what the stage computes: it is part of the cache key. */
  readonly version: string;
  /**
   * The part of the config that decides the output, hashed into the cache key (absent: all of
   * it). Settings that only change logging or checkpoint cadence stay out, so changing them reuses
   * the entry.
   */
  readonly keyConfig?: (config: C) => unknown;
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
  readonly keyConfig?: (config: C) => unknown;
  readonly compute: (inputs: I, config: C, ctx: StageContext) => Promise<O> | O;
}): Stage<I, C, O> {
  return {
    name: spec.name,
    version: spec.version,
    ...(spec.keyConfig ? { keyConfig: spec.keyConfig } : {}),
    run: (inputs, config, ctx) =>
      TE.tryCatch(
        async () => await spec.compute(inputs, config, ctx),
        (caught) => ({ ...toPipelineError(caught), stage: spec.name }),
      ),
  };
}
