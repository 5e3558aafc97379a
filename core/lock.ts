/**
 * Per-entry compute locks for the artifact cache, so that several processes sharing one cache
 * directory (local grid workers, Slurm array tasks on a shared file system) compute each missing
 * entry once: the first takes `<cacheRoot>/<stage>/<key>.lock`, the others wait for it to go away
 * and then read the entry it wrote.
 *
 * A lock file is created exclusively (`createNew`) and holds who took it: host, pid, start time and
 * a random token. Its holder keeps an exclusive `flock` on it while computing (the kernel drops it
 * when the process dies, however it dies) and a worker thread refreshes the file's mtime (the
 * heartbeat), independent of the main thread, which numeric loops may keep busy for minutes. A lock
 * is stale, and is broken with a report line, when its holder ran on this host and is gone (its
 * flock is free), or when its heartbeat is older than `staleAfterMs` (the test across hosts, whose
 * shared file system may keep locks local, and where the host name cannot be read). Breaking
 * renames the file aside and checks that it is still the one judged stale, so two waiters cannot
 * both break it and both compute.
 *
 * Correctness of the cache never rests on the lock: entries are still written to a temporary
 * directory, renamed into place and verified by their sha256 manifests. A lost race only costs a
 * computation twice.
 * @module
 */

import { join } from "node:path";
import { interruptFlag } from "./interrupt.ts";

/** Timing of lock waits and heartbeats. */
export interface LockOptions {
  /** A lock whose heartbeat (mtime) is older than this is stale (default 2 minutes). */
  readonly staleAfterMs: number;
  /** How often the holder refreshes its lock's mtime (default 10 s). */
  readonly heartbeatMs: number;
  /** How often a waiter looks at the lock again (default 500 ms). */
  readonly pollMs: number;
  /** How often a waiter prints that it is still waiting (default 30 s). */
  readonly reportEveryMs: number;
}

/** Defaults for `LockOptions`. */
export const DEFAULT_LOCK_OPTIONS: LockOptions = {
  staleAfterMs: 120_000,
  heartbeatMs: 10_000,
  pollMs: 500,
  reportEveryMs: 30_000,
};

/** What a lock file records about its holder. */
export interface LockHolder {
  /** Host name of the holder, or "unknown" where it may not read it. */
  readonly host: string;
  /** Process id of the holder on its host. */
  readonly pid: number;
  /** ISO time at which the lock was taken. */
  readonly startedAt: string;
  /** Random token telling this lock apart from a later one at the same path. */
  readonly token: string;
  /** What is being computed, for the waiters' report lines (e.g. `distill/3fa2…`). */
  readonly what: string;
}

/** A lock this process holds. */
export interface HeldLock {
  /** Path of the lock file. */
  readonly path: string;
  /** What this process wrote into the lock file. */
  readonly holder: LockHolder;
  /** True when this process waited for another holder before getting the lock. */
  readonly waited: boolean;
  /** Stops the heartbeat and removes the lock file if it is still this one. */
  release(): Promise<void>;
}

/** The lock file of a cache entry. */
export function entryLockPath(cacheRoot: string, stage: string, key: string): string {
  return join(cacheRoot, stage, `${key}.lock`);
}

/**
 * This host's name, from `Deno.hostname()` (`--allow-sys=hostname`, which every task that takes
 * cache locks grants) or else `/etc/hostname`; "unknown" when the process may read neither, and then
 * only the heartbeat's age can tell a dead holder.
 */
export function thisHost(): string {
  try {
    return Deno.hostname();
  } catch {
    try {
      return Deno.readTextFileSync("/etc/hostname").trim() || "unknown";
    } catch {
      return "unknown";
    }
  }
}

/**
 * Whether the holder of the lock file at `path` still runs: the holder keeps an exclusive
 * `flock` on the file for as long as it computes, and the kernel drops it when the process
 * dies, however it dies. True or false from a non-blocking attempt at that lock, `undefined` when
 * the file system cannot tell.
 */
export function lockFileHeld(path: string): boolean | undefined {
  let file: Deno.FsFile;
  try {
    file = Deno.openSync(path, { read: true, write: true });
  } catch (e) {
    return e instanceof Deno.errors.NotFound ? false : undefined;
  }
  try {
    if (!file.tryLockSync(true)) return true;
    file.unlockSync();
    return false;
  } catch {
    return undefined;
  } finally {
    file.close();
  }
}

/**
 * Why a lock is stale, or `undefined` when it is live. `holder` is the parsed lock file
 * (`undefined` when unreadable or still being written), `ageMs` the time since its last heartbeat,
 * `host` this host, `alive` whether the holder still runs (see `lockFileHeld`). `alive` is asked
 * only about a holder on this host: across hosts a shared file system may keep locks local to each
 * client, so there only the heartbeat's age counts.
 */
export function staleReason(
  holder: LockHolder | undefined,
  ageMs: number,
  host: string,
  alive: () => boolean | undefined,
  options: Pick<LockOptions, "staleAfterMs">,
): string | undefined {
  if (holder && host !== "unknown" && holder.host === host) {
    const isAlive = alive();
    if (isAlive === false) {
      return `its holder, pid ${holder.pid} on ${host}, is gone (the lock file is not held)`;
    }
    if (isAlive === true) return undefined;
  }
  if (ageMs > options.staleAfterMs) {
    return `no heartbeat for ${(ageMs / 1000).toFixed(0)} s (limit ${
      (options.staleAfterMs / 1000).toFixed(0)
    } s)`;
  }
  return undefined;
}

/** One line naming a holder, for waiting and breaking messages. */
export function describeHolder(holder: LockHolder | undefined): string {
  return holder
    ? `pid ${holder.pid} on ${holder.host} (since ${holder.startedAt})`
    : "a process still writing its lock file";
}

/**
 * Takes the lock at `path`, waiting while a live holder has it and breaking it when stale.
 * `report` receives one line when waiting starts, every `reportEveryMs` while it lasts, and when a
 * stale lock is broken. The caller must `release()` the result (use try/finally).
 */
export async function acquireLock(
  path: string,
  what: string,
  report: (line: string) => void,
  options: LockOptions = DEFAULT_LOCK_OPTIONS,
): Promise<HeldLock> {
  const host = thisHost();
  let waitedSince: number | undefined;
  let lastReport = -Infinity;
  for (;;) {
    const holder: LockHolder = {
      host,
      pid: Deno.pid,
      startedAt: new Date().toISOString(),
      token: crypto.randomUUID(),
      what,
    };
    const file = await tryCreate(path, holder);
    if (file) {
      if (waitedSince !== undefined) {
        report(
          `${what}: got the lock after waiting ${((performance.now() - waitedSince) / 1000).toFixed(1)} s`,
        );
      }
      return await held(path, file, holder, waitedSince !== undefined, options, report);
    }
    const seen = await readLock(path);
    if (!seen) continue; // released between our attempt and our look: try again at once
    const reason = staleReason(
      seen.holder,
      Date.now() - seen.mtimeMs,
      host,
      () => lockFileHeld(path),
      options,
    );
    if (reason) {
      if (await breakLock(path, seen)) {
        report(`${what}: breaking stale lock ${path} of ${describeHolder(seen.holder)}: ${reason}`);
      }
      continue;
    }
    const now = performance.now();
    waitedSince ??= now;
    if (now - lastReport >= options.reportEveryMs) {
      const waited = ((now - waitedSince) / 1000).toFixed(0);
      report(
        `${what}: waiting for ${
          describeHolder(seen.holder)
        }, which is computing it (${waited} s so far; lock ${path})`,
      );
      lastReport = now;
    }
    await new Promise((resolve) => setTimeout(resolve, options.pollMs));
  }
}

interface SeenLock {
  readonly holder: LockHolder | undefined;
  readonly text: string;
  readonly mtimeMs: number;
}

/**
 * Creates the lock file exclusively, takes its flock and then writes the holder into it (so a
 * reader that can parse the holder knows the flock is already taken). Undefined if it exists.
 */
async function tryCreate(
  path: string,
  holder: LockHolder,
  retried = false,
): Promise<Deno.FsFile | undefined> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { createNew: true, read: true, write: true });
  } catch (e) {
    if (e instanceof Deno.errors.AlreadyExists) return undefined;
    if (e instanceof Deno.errors.NotFound && !retried) {
      await Deno.mkdir(join(path, ".."), { recursive: true });
      return tryCreate(path, holder, true);
    }
    throw e;
  }
  try {
    await file.lock(true).catch(() => {}); // a file system without locks leaves the heartbeat alone
    const bytes = new TextEncoder().encode(JSON.stringify(holder) + "\n");
    for (let written = 0; written < bytes.length;) written += await file.write(bytes.subarray(written));
  } catch (e) {
    file.close();
    await Deno.remove(path).catch(() => {});
    throw e;
  }
  return file;
}

async function readLock(path: string): Promise<SeenLock | undefined> {
  try {
    const [text, info] = await Promise.all([Deno.readTextFile(path), Deno.stat(path)]);
    let holder: LockHolder | undefined;
    try {
      holder = JSON.parse(text);
    } catch {
      holder = undefined; // empty or half-written: judged by its age alone
    }
    return { holder, text, mtimeMs: info.mtime?.getTime() ?? Date.now() };
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Removes the stale lock `seen` at `path`. The file is renamed aside first (atomic: one waiter
 * wins); if what was moved is not the lock judged stale (a new holder took the path meanwhile), it
 * is linked back, which fails rather than overwrite a lock taken in between.
 */
async function breakLock(path: string, seen: SeenLock): Promise<boolean> {
  const aside = `${path}.stale-${crypto.randomUUID().slice(0, 8)}`;
  try {
    await Deno.rename(path, aside);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
  const moved = await readLock(aside);
  if (moved && (moved.text !== seen.text || moved.mtimeMs !== seen.mtimeMs)) {
    await Deno.link(aside, path).catch(() => {});
    await Deno.remove(aside).catch(() => {});
    return false;
  }
  await Deno.remove(aside).catch(() => {});
  return true;
}

/**
 * The heartbeat runs in a worker thread so that a busy main thread cannot make its lock look dead.
 * The worker also listens for SIGINT and SIGTERM while the lock is held: it removes the lock file at
 * once (if it is still this one), says so on stderr, gives the signal back its default action (a
 * second Ctrl-C stops the process there and then) and tells the main thread: through
 * `core/interrupt.ts`, which its loops check on every step, and by a message, for when it is idle. A
 * listener on the main thread could not run while a numeric loop keeps it busy.
 */
const HEARTBEAT_SOURCE = `
self.onmessage = (event) => {
  const { path, everyMs, token, what, flag } = event.data;
  const beat = () => { try { const now = new Date(); Deno.utimeSync(path, now, now); } catch { /* released or broken */ } };
  setInterval(beat, everyMs);
  const handlers = {};
  const onSignal = (signal) => () => {
    for (const s of Object.keys(handlers)) { try { Deno.removeSignalListener(s, handlers[s]); } catch { /* gone */ } }
    let released = false;
    try {
      if (JSON.parse(Deno.readTextFileSync(path)).token === token) { Deno.removeSync(path); released = true; }
    } catch { /* already gone or broken */ }
    console.error(\`\${what}: \${signal}: \${released ? "released" : "no longer held"} lock \${path}; stopping (\${signal === "SIGINT" ? "Ctrl-C" : signal} again stops at once)\`);
    Atomics.store(flag, 0, signal === "SIGINT" ? 130 : 143); // seen by the main thread's loops
    self.postMessage({ signal, released });
  };
  for (const s of ["SIGINT", "SIGTERM"]) {
    try { handlers[s] = onSignal(s); Deno.addSignalListener(s, handlers[s]); } catch { delete handlers[s]; }
  }
  self.postMessage({ ready: true });
};`;

let heartbeatUrl: string | undefined;

async function held(
  path: string,
  file: Deno.FsFile,
  holder: LockHolder,
  waited: boolean,
  options: LockOptions,
  report: (line: string) => void,
): Promise<HeldLock> {
  heartbeatUrl ??= URL.createObjectURL(new Blob([HEARTBEAT_SOURCE], { type: "application/javascript" }));
  const worker = new Worker(heartbeatUrl, { type: "module" });
  worker.postMessage({
    path,
    everyMs: options.heartbeatMs,
    token: holder.token,
    what: holder.what,
    flag: interruptFlag,
  });
  let released = false;
  let ready: () => void = () => {};
  const listening = new Promise<void>((resolve) => (ready = resolve));
  worker.onmessage = (event: MessageEvent<{ ready?: true; signal: string }>) => {
    if (event.data.ready) return ready();
    released = true; // the worker removed the file and said so
    file.close();
    Deno.exit(event.data.signal === "SIGINT" ? 130 : 143);
  };
  await listening; // the signals are the worker's before the caller starts computing
  return {
    path,
    holder,
    waited,
    async release() {
      if (released) return;
      released = true;
      worker.terminate();
      try {
        const now = await readLock(path);
        if (now?.holder?.token !== holder.token) {
          report(
            `${holder.what}: lock ${path} was broken by another process while this one computed (its heartbeat stalled?)`,
          );
          return;
        }
        await Deno.remove(path).catch((e) => {
          if (!(e instanceof Deno.errors.NotFound)) throw e;
        });
      } finally {
        file.close(); // drops the flock, after the file is gone
      }
    },
  };
}
