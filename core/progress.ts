/**
 * The one progress facility: a redrawn bar on a terminal, periodic plain lines elsewhere (CI logs,
 * files). Every long loop takes a `ProgressFactory` from its stage context, so the numerics never
 * know which of the two they are driving.
 * @module
 */

import { exitIfInterrupted } from "./interrupt.ts";

/** Progress of one loop. */
export interface Progress {
  /** Reports that `done` of `total` units are finished; `info` is shown beside (e.g. loss). */
  update(done: number, info?: Readonly<Record<string, number | string>>): void;
  /** Marks the loop finished: prints the last reported state once, with a newline on a terminal. */
  finish(): void;
}

/** Creates a `Progress` for a loop of `total` units. */
export type ProgressFactory = (label: string, total: number) => Progress;

/** Options of `consoleProgress`. */
export interface ConsoleProgressOptions {
  /** Where to write (default stderr, so stdout stays clean for JSON output). */
  readonly write?: (text: string) => void;
  /** Draw a bar (default: whether stderr is a terminal). */
  readonly tty?: boolean;
  /** Minimum time between plain lines, ms (default 10 s, or OBD_PROGRESS_INTERVAL_MS). */
  readonly lineIntervalMs?: number;
  /** Clock in ms (injectable for tests). */
  readonly now?: () => number;
}

const encoder = new TextEncoder();

/** A progress factory writing to the console. */
export function consoleProgress(options: ConsoleProgressOptions = {}): ProgressFactory {
  const write = options.write ?? ((text: string) => void Deno.stderr.writeSync(encoder.encode(text)));
  const tty = options.tty ?? Deno.stderr.isTerminal();
  const interval = options.lineIntervalMs ?? 10_000;
  const now = options.now ?? (() => performance.now());
  return (label, total) => {
    const start = now();
    let lastDraw = -Infinity;
    let lastDone = 0;
    let lastInfo: Readonly<Record<string, number | string>> | undefined;
    const draw = (final: boolean) => {
      const line = describe(label, lastDone, total, now() - start, lastInfo);
      if (tty) write(`\r\x1b[2K${bar(lastDone, total)} ${line}${final ? "\n" : ""}`);
      else write(`[progress] ${line}\n`);
      lastDraw = now();
    };
    return {
      update(done, info) {
        exitIfInterrupted(); // a long loop's regular call-out: where a Ctrl-C is obeyed (core/interrupt.ts)
        lastDone = done;
        lastInfo = info;
        if (now() - lastDraw >= (tty ? 100 : interval)) draw(false);
      },
      finish() {
        draw(true);
      },
    };
  };
}

/** A factory whose progress reports go nowhere (library use, tests). */
export const silentProgress: ProgressFactory = (): Progress => ({ update() {}, finish() {} });

function bar(done: number, total: number, width = 24): string {
  const filled = total > 0 ? Math.round((width * Math.min(done, total)) / total) : width;
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}]`;
}

function describe(
  label: string,
  done: number,
  total: number,
  elapsedMs: number,
  info?: Readonly<Record<string, number | string>>,
): string {
  const pct = total > 0 ? ((100 * done) / total).toFixed(0) : "100";
  const eta = done > 0 && done < total ? ` eta ${formatDuration((elapsedMs * (total - done)) / done)}` : "";
  const extras = info
    ? " " +
      Object.entries(info).map(([k, v]) => `${k}=${typeof v === "number" ? formatNumber(v) : v}`).join(" ")
    : "";
  return `${label} ${done}/${total} (${pct}%) ${formatDuration(elapsedMs)}${eta}${extras}`;
}

/** `1h02m`, `3m05s`, `12.3s`. */
export function formatDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

function formatNumber(v: number): string {
  return Number.isInteger(v)
    ? String(v)
    : Math.abs(v) >= 1e4 || Math.abs(v) < 1e-3
    ? v.toExponential(3)
    : v.toPrecision(4);
}
