/**
 * The stage runtime: computes a stage's cache key, reuses a verified cache entry or runs the stage
 * and stores its output atomically, and hands the value downstream as an `Artifact`. Composition is
 * plain fp-ts: `runStage` returns a `TaskEither`, so a pipeline is a `pipe` of them and the first
 * failure short-circuits everything after it.
 *
 * Cache key = sha256(canonical JSON of { stage, version, config, input keys }). A changed config
 * therefore changes this stage's key and, through the input keys, every key downstream of it, while
 * everything upstream keeps its key and is reused.
 *
 * Several processes may share one cache (grid workers, Slurm array tasks): before computing a
 * missing entry the runtime takes its lock (`core/lock.ts`); a process that finds the lock
 * taken waits, then reuses the entry the holder wrote, so each entry is computed once.
 * @module
 */

import * as TE from "fp-ts/TaskEither.js";
import { join } from "node:path";
import { ArtifactCache, type Manifest } from "./cache.ts";
import { directoryCheckpoint } from "./checkpoint.ts";
import { decodeArtifact, encodeArtifact } from "./artifact.ts";
import { formatError, type PipelineError, pipelineError, toPipelineError } from "./errors.ts";
import { canonicalJson, sha256Hex } from "./hash.ts";
import { acquireLock, DEFAULT_LOCK_OPTIONS, entryLockPath, type HeldLock, type LockOptions } from "./lock.ts";
import type { MetricsLog } from "./metrics.ts";
import { memoryMetricsLog } from "./metrics.ts";
import { type ProgressFactory, silentProgress } from "./progress.ts";
import { keyConfig, type Stage } from "./stage.ts";

/** A stage output together with where it came from. */
export interface Artifact<O> {
  /** The stage that produced it. */
  readonly stage: string;
  /** Its cache key. */
  readonly key: string;
  /** The stage's output. */
  readonly value: O;
  /** True when the value was read from the cache rather than computed in this run. */
  readonly fromCache: boolean;
  /** What the cache recorded about it. */
  readonly manifest: Manifest;
}

/** Upstream artifacts keyed like the stage's input record. */
export type ArtifactInputs<I> = { readonly [K in keyof I]: Artifact<I[K]> };

/** Shared state of one pipeline run. */
export interface Runtime {
  /** Where stage outputs are stored and found. */
  readonly cache: ArtifactCache;
  /** Stage names to recompute even when a valid entry exists (`--force`). */
  readonly force: ReadonlySet<string>;
  /** Backend name recorded in manifests. */
  readonly backend: string;
  /** Progress bars or periodic lines for long stages. */
  readonly progress: ProgressFactory;
  /** The run's JSON-lines log. */
  readonly metrics: MetricsLog;
  /** Human-readable status lines (cache hits, recomputations). */
  readonly report: (line: string) => void;
  /** How many times each stage was computed (not reused) by this runtime. */
  readonly executions: Map<string, number>;
  /** Timing of the per-entry compute locks shared with other processes. */
  readonly lock: LockOptions;
  /** Worker threads a stage may use (the command reads `OBD_THREADS`; stages never read the environment). */
  readonly threads: number;
}

/** Creates a runtime; unspecified services are silent/in-memory. */
export function createRuntime(options: {
  readonly cacheRoot: string;
  readonly backend: string;
  readonly force?: Iterable<string>;
  readonly progress?: ProgressFactory;
  readonly metrics?: MetricsLog;
  readonly report?: (line: string) => void;
  readonly cache?: ArtifactCache;
  /** Overrides of the lock timing (defaults: `DEFAULT_LOCK_OPTIONS`). */
  readonly lock?: Partial<LockOptions>;
  /** Worker threads a stage may use (default 1). */
  readonly threads?: number;
}): Runtime {
  return {
    cache: options.cache ?? new ArtifactCache(options.cacheRoot),
    force: new Set(options.force ?? []),
    backend: options.backend,
    progress: options.progress ?? silentProgress,
    metrics: options.metrics ?? memoryMetricsLog(),
    report: options.report ?? (() => {}),
    executions: new Map(),
    lock: { ...DEFAULT_LOCK_OPTIONS, ...options.lock },
    threads: options.threads ?? 1,
  };
}

/** The cache key of a stage for a config and upstream keys. */
export async function stageKey(
  stage: { readonly name: string; readonly version: string },
  config: unknown,
  inputKeys: Readonly<Record<string, string>>,
): Promise<string> {
  const text = canonicalJson({ stage: stage.name, version: stage.version, config, inputs: inputKeys });
  return (await sha256Hex(text)).slice(0, 32);
}

/** Runs `stage` on upstream artifacts, reusing a valid cache entry unless the stage is forced. */
// deno-doc-ignore private-type-ref -- TaskEither is fp-ts's own type
export function runStage<I, C, O>(
  rt: Runtime,
  stage: Stage<I, C, O>,
  config: C,
  inputs: ArtifactInputs<I>,
): TE.TaskEither<PipelineError, Artifact<O>> {
  const inputKeys = Object.fromEntries(
    Object.entries(inputs as Record<string, Artifact<unknown>>).map(([name, a]) => [name, a.key]),
  );
  const at = (e: PipelineError): PipelineError => ({ ...e, stage: e.stage ?? stage.name });
  return TE.mapLeft(at)(
    TE.tryCatch(async () => {
      try {
        canonicalJson(config); // validate alone, so the error names the setting, not the key's envelope
      } catch (e) {
        const what = (e as Error).message.replace(/^\$\.?/, "");
        throw pipelineError(
          "config",
          `config of stage ${stage.name}: ${what}`,
          "use finite numbers, strings and booleans",
        );
      }
      const key = await stageKey(stage, keyConfig(stage, config), inputKeys);
      const forced = rt.force.has(stage.name);
      if (!forced) {
        const found = await rt.cache.lookup(stage.name, key).catch((e) => {
          throw cacheError(rt, `cannot read cache entry ${rt.cache.entryDir(stage.name, key)}`, e);
        });
        if (found.status === "hit") {
          rt.report(`${stage.name}: reusing ${key} (cached)`);
          rt.metrics.log({ stage: stage.name, event: "cache-hit", key });
          const value = decodeArtifact(found.files) as O;
          return { stage: stage.name, key, value, fromCache: true, manifest: found.manifest };
        }
        if (found.status === "invalid") {
          rt.report(`${stage.name}: cache entry ${key} is invalid (${found.reason}); recomputing`);
          rt.metrics.log({ stage: stage.name, event: "cache-invalid", key, reason: found.reason });
        }
      } else {
        rt.report(`${stage.name}: recomputing ${key} (--force)`);
      }
      const lockPath = entryLockPath(rt.cache.root, stage.name, key);
      const lock: HeldLock = await acquireLock(lockPath, `${stage.name}/${key}`, rt.report, rt.lock).catch(
        (e) => {
          throw cacheError(rt, `cannot take the compute lock ${lockPath}`, e);
        },
      );
      try {
        // Another process may have written the entry while we looked or waited.
        const entryDir = rt.cache.entryDir(stage.name, key);
        if (!forced && (lock.waited || await Deno.stat(entryDir).then(() => true, () => false))) {
          const found = await rt.cache.lookup(stage.name, key).catch((e) => {
            throw cacheError(rt, `cannot read cache entry ${entryDir}`, e);
          });
          if (found.status === "hit") {
            rt.report(`${stage.name}: reusing ${key} (computed by another process)`);
            rt.metrics.log({ stage: stage.name, event: "cache-hit", key, concurrent: true });
            return {
              stage: stage.name,
              key,
              value: decodeArtifact(found.files) as O,
              fromCache: true,
              manifest: found.manifest,
            };
          }
        }
        const leftovers = await rt.cache.removeLeftovers(stage.name, key).catch(() => []);
        if (leftovers.length) {
          rt.report(
            `${stage.name}: removed what an interrupted write of ${key} left: ${leftovers.join(", ")}`,
          );
        }
        return await compute(rt, stage, config, inputs, key, inputKeys);
      } finally {
        await lock.release();
      }
    }, (caught) => toPipelineError(caught, stage.name)),
  );
}

async function compute<I, C, O>(
  rt: Runtime,
  stage: Stage<I, C, O>,
  config: C,
  inputs: ArtifactInputs<I>,
  key: string,
  inputKeys: Record<string, string>,
): Promise<Artifact<O>> {
  rt.report(`${stage.name}: computing ${key}`);
  rt.executions.set(stage.name, (rt.executions.get(stage.name) ?? 0) + 1);
  const workDir = join(rt.cache.root, stage.name, `.work-${key}`);
  await Deno.mkdir(workDir, { recursive: true }).catch((e) => {
    throw cacheError(rt, `cannot create ${workDir}`, e);
  });
  const metrics: Record<string, number | string> = {};
  const values = Object.fromEntries(
    Object.entries(inputs as Record<string, Artifact<unknown>>).map(([name, a]) => [name, a.value]),
  ) as I;
  const started = performance.now();
  const result = await stage.run(values, config, {
    progress: rt.progress,
    backend: rt.backend,
    threads: rt.threads,
    checkpoint: directoryCheckpoint(join(workDir, "checkpoint")),
    log: (record) => rt.metrics.log({ stage: stage.name, ...record }),
    metric: (name, value) => {
      metrics[name] = value;
      rt.metrics.log({ stage: stage.name, metric: name, value });
    },
  })();
  if (result._tag === "Left") throw result.left;
  const seconds = (performance.now() - started) / 1000;
  let files: Map<string, Uint8Array>;
  try {
    files = encodeArtifact(result.right);
  } catch (e) {
    throw pipelineError(
      "internal",
      `stage ${stage.name} returned a value that cannot be stored: ${(e as Error).message}`,
    );
  }
  const manifest = await rt.cache.write({
    stage: stage.name,
    version: stage.version,
    key,
    config,
    inputs: inputKeys,
    backend: rt.backend,
    createdAt: new Date().toISOString(),
    timings: { seconds },
    metrics,
  }, files).catch((e) => {
    throw cacheError(
      rt,
      `could not write cache entry ${rt.cache.entryDir(stage.name, key)}; the cache is unchanged`,
      e,
    );
  });
  await Deno.remove(workDir, { recursive: true }).catch(() => {});
  rt.metrics.log({ stage: stage.name, event: "computed", key, seconds });
  rt.report(`${stage.name}: done in ${seconds.toFixed(1)}s`);
  return { stage: stage.name, key, value: result.right, fromCache: false, manifest };
}

function cacheError(rt: Runtime, what: string, caught: unknown): PipelineError {
  const cause = toPipelineError(caught);
  const hint = cause.kind === "io" && cause.hint
    ? cause.hint
    : `check that ${rt.cache.root} is a writable directory with free space`;
  return pipelineError("cache", `${what}: ${cause.message}`, hint);
}

/** Formats an error for the terminal (re-exported for CLIs). */
export { formatError };
