/**
 * Typed pipeline errors. Every failure a user can meet is one of these values, carrying a
 * one-line message that names the problem and a hint that names the fix. Stages return them
 * inside `TaskEither`; nothing throws across a stage boundary.
 * @module
 */

/** What went wrong, coarsely: lets callers and tests branch without parsing messages. */
export type ErrorKind =
  | "config" // an unknown option or a malformed value
  | "input" // a missing, truncated or invalid input file or dataset
  | "checksum" // a file whose size or sha256 does not match what is expected
  | "network" // a download that could not be made
  | "cache" // an unreadable or unwritable cache
  | "io" // any other file-system failure (full disk, permissions)
  | "backend" // a tensor backend that is missing or failed to start
  | "numeric" // NaN, divergence, a degenerate statistic
  | "internal"; // a bug: an exception a stage did not expect

/** A failure with a message a user can act on. */
export interface PipelineError {
  /** Category of the failure. */
  readonly kind: ErrorKind;
  /** One line: what is wrong, naming the file, option or value. */
  readonly message: string;
  /** One line: what to do about it. */
  readonly hint?: string;
  /** The stage in which it happened, filled in by the runtime. */
  readonly stage?: string;
}

/** Builds a `PipelineError`. */
export function pipelineError(kind: ErrorKind, message: string, hint?: string): PipelineError {
  return hint === undefined ? { kind, message } : { kind, message, hint };
}

/** Thrown only inside a stage's own code to abort with a typed error; the runtime converts it back. */
export class PipelineFailure extends Error {
  /** The typed error this exception carries. */
  readonly error: PipelineError;
  constructor(error: PipelineError) {
    super(error.message);
    this.error = error;
  }
}

/** Throws a `PipelineFailure` (for deep numeric code where threading Either would obscure the maths). */
export function fail(kind: ErrorKind, message: string, hint?: string): never {
  throw new PipelineFailure(pipelineError(kind, message, hint));
}

/** Converts anything caught into a `PipelineError`, keeping typed ones and classifying OS errors. */
export function toPipelineError(caught: unknown, context = ""): PipelineError {
  if (caught instanceof PipelineFailure) return caught.error;
  if (isPipelineError(caught)) return caught;
  const where = context ? `${context}: ` : "";
  if (caught instanceof Deno.errors.NotCapable || caught instanceof Deno.errors.PermissionDenied) {
    return pipelineError(
      "io",
      `${where}permission denied (${firstLine(caught)})`,
      "this task may only touch the paths its deno.json task grants; write under data/ or run the module with wider --allow-* flags",
    );
  }
  if (caught instanceof Deno.errors.NotFound) {
    return pipelineError("io", `${where}not found (${firstLine(caught)})`);
  }
  if (caught instanceof Error && /no space left|ENOSPC|os error 28/i.test(caught.message)) {
    return pipelineError(
      "io",
      `${where}disk full (${firstLine(caught)})`,
      "free space on the disk holding data/ and run again",
    );
  }
  if (caught instanceof Error && /\(os error \d+\)/.test(caught.message)) {
    return pipelineError("io", `${where}${firstLine(caught)}`, "check the path and its permissions");
  }
  return pipelineError(
    "internal",
    `${where}${firstLine(caught)}`,
    "this is a bug; please report it with the run's log",
  );
}

/** True when `value` is already a `PipelineError`. */
export function isPipelineError(value: unknown): value is PipelineError {
  return typeof value === "object" && value !== null && "kind" in value && "message" in value &&
    typeof (value as { message: unknown }).message === "string";
}

/** One line for the terminal: `error[stage/kind]: message — hint`. */
export function formatError(error: PipelineError): string {
  const where = error.stage ? `${error.stage}/${error.kind}` : error.kind;
  const hint = error.hint ? ` — ${error.hint}` : "";
  return `error[${where}]: ${error.message}${hint}`;
}

function firstLine(caught: unknown): string {
  const text = caught instanceof Error ? caught.message : String(caught);
  return text.split("\n")[0];
}
