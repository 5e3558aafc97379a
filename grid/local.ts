/**
 * The local executor: a grid's tasks on worker subprocesses of this machine, each task's output in
 * its own log; a failing task is recorded and the others go on.
 * @module
 */

import { join } from "node:path";
import { toPipelineError } from "../core/errors.ts";
import {
  describeTask,
  errorLine,
  type GridReporter,
  type GridTask,
  shellQuote,
  stagesComputedOf,
  type TaskOutcome,
} from "./spec.ts";

/**
 * Runs `tasks` on `workers` local subprocesses, each task's output in `logDir/<name>.log`
 * (`.attemptN.log` after the first attempt). A failing task is recorded and the others go on;
 * `onOutcome` sees every outcome as it comes (to save the status).
 */
export async function runLocal(
  tasks: readonly GridTask[],
  commands: ReadonlyMap<number, readonly string[]>,
  options: {
    readonly workers: number;
    readonly logDir: string;
    readonly attempt: number;
    readonly report: GridReporter;
    readonly onOutcome: (o: TaskOutcome) => Promise<void>;
  },
): Promise<TaskOutcome[]> {
  await Deno.mkdir(options.logDir, { recursive: true });
  const queue = [...tasks];
  const outcomes: TaskOutcome[] = [];
  const running = new Set<number>();
  const total = tasks.length;
  const status = () =>
    `${outcomes.length}/${total} finished (${outcomes.filter((o) => !o.ok).length} failed), running: ${
      [...running].join(", ") || "none"
    }`;
  const runOne = async (task: GridTask): Promise<TaskOutcome> => {
    const log = join(
      options.logDir,
      `${task.name}${options.attempt > 1 ? `.attempt${options.attempt}` : ""}.log`,
    );
    const [program, ...args] = commands.get(task.index)!;
    const started = performance.now();
    const file = await Deno.open(log, { create: true, write: true, truncate: true });
    const encoder = new TextEncoder();
    await file.write(encoder.encode(`$ ${commands.get(task.index)!.map(shellQuote).join(" ")}\n`));
    let stdout = "";
    let stderr = "";
    let code: number;
    try {
      const child = new Deno.Command(program, { args, stdout: "piped", stderr: "piped", stdin: "null" })
        .spawn();
      // Both streams go to the log as they come; each is kept whole for its JSON line / error line.
      let writing = Promise.resolve();
      const pump = async (stream: ReadableStream<Uint8Array>, keep: (s: string) => void) => {
        for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
          keep(chunk);
          writing = writing.then(async () => void await file.write(encoder.encode(chunk)));
        }
      };
      await Promise.all([pump(child.stdout, (s) => (stdout += s)), pump(child.stderr, (s) => (stderr += s))]);
      code = (await child.status).code;
      await writing;
    } catch (e) {
      code = 127;
      stderr += `\nerror[grid/io]: could not start ${program}: ${toPipelineError(e).message}\n`;
      await file.write(encoder.encode(stderr));
    } finally {
      file.close();
    }
    const seconds = +((performance.now() - started) / 1000).toFixed(1);
    const stagesComputed = stagesComputedOf(stdout);
    return {
      index: task.index,
      ok: code === 0,
      attempt: options.attempt,
      exitCode: code,
      seconds,
      logs: [log],
      ...(code === 0 ? {} : { error: errorLine(stderr) }),
      ...(stagesComputed ? { stagesComputed } : {}),
    };
  };
  const worker = async () => {
    for (let task = queue.shift(); task; task = queue.shift()) {
      running.add(task.index);
      options.report(`[grid] task ${task.index} (${describeTask(task)}): started; ${status()}`);
      const outcome = await runOne(task);
      running.delete(task.index);
      outcomes.push(outcome);
      await options.onOutcome(outcome);
      options.report(
        outcome.ok
          ? `[grid] task ${task.index} (${describeTask(task)}): done in ${outcome.seconds} s, computed ${
            JSON.stringify(outcome.stagesComputed ?? {})
          }; ${status()}`
          : `[grid] task ${task.index} (${
            describeTask(task)
          }): FAILED (exit ${outcome.exitCode}) ${outcome.error} — log ${outcome.logs[0]}; ${status()}`,
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.workers, tasks.length) }, worker));
  return outcomes.sort((a, b) => a.index - b.index);
}
