/**
 * The record of a grid in its run directory: `grid.json` (the spec and every command line) and
 * `status.json` (each task's latest outcome and every attempt), so a grid can be resubmitted.
 * @module
 */

import { join } from "node:path";
import { type PipelineError, pipelineError, toPipelineError } from "../core/errors.ts";
import type { Executor, GridSpec, GridTask, TaskOutcome } from "./spec.ts";

/** `grid.json`: what the grid is. */
export interface GridRecord {
  /** The grid as parsed from the command line. */
  readonly spec: GridSpec;
  /** Its tasks in order, each with the exact command line it runs. */
  readonly tasks: readonly (GridTask & { readonly command: readonly string[] })[];
  /** ISO time at which the grid was created. */
  readonly createdAt: string;
}

/** `status.json`: the latest outcome of every task that ran, and the attempts made. */
export interface GridStatus {
  /** Every attempt so far, in order: its number, executor, task indices, ISO start time and (Slurm) array job id. */
  readonly attempts: readonly {
    readonly attempt: number;
    readonly executor: Executor;
    readonly indices: readonly number[];
    readonly startedAt: string;
    readonly jobId?: string;
  }[];
  /** The latest outcome of every task that ran, keyed by task index. */
  readonly outcomes: Readonly<Record<string, TaskOutcome>>;
}

/** Reads a grid's record and status, as typed errors that name the file. */
export async function readGrid(
  dir: string,
): Promise<{ record: GridRecord; status: GridStatus } | PipelineError> {
  const read = async (name: string) => {
    const path = join(dir, name);
    try {
      return JSON.parse(await Deno.readTextFile(path));
    } catch (e) {
      const cause = e instanceof SyntaxError ? "is not valid JSON" : toPipelineError(e).message;
      throw pipelineError(
        "input",
        `${path} ${cause}`,
        "give --resubmit-failed the run directory a grid wrote (data/runs/<stamp>-grid-…)",
      );
    }
  };
  try {
    const record = await read("grid.json") as GridRecord;
    const status = await read("status.json").catch(() => ({ attempts: [], outcomes: {} })) as GridStatus;
    return { record, status };
  } catch (e) {
    return toPipelineError(e);
  }
}

/** The indices whose latest outcome is not a success (never run counts as failed). */
export function failedIndices(record: GridRecord, status: GridStatus): number[] {
  return record.tasks.filter((t) => !status.outcomes[t.index]?.ok).map((t) => t.index);
}
