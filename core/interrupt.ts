/**
 * A signal's request to stop, seen by a busy main thread. The lock heartbeat worker (`core/lock.ts`)
 * handles SIGINT and SIGTERM while a process holds cache locks: it releases them at once and stores
 * the exit status here, in memory shared with the main thread, whose long loops look at it on every
 * step (`core/loop.ts`) and progress update (`core/progress.ts`): a numeric loop never returns to the
 * event loop, where a signal listener would run.
 * @module
 */

/** 0, or the exit status a signal asked for (130 for SIGINT, 143 for SIGTERM). */
export const interruptFlag: Int32Array = new Int32Array(new SharedArrayBuffer(4));

/** Exits with the requested status if a signal asked this process to stop. */
export function exitIfInterrupted(): void {
  const status = Atomics.load(interruptFlag, 0);
  if (status !== 0) Deno.exit(status);
}
