/**
 * Where dataset files are looked for before anything is downloaded, and the mirrors a download tries.
 *
 * D4RL files: `data/d4rl/`, then `$D4RL_DATASET_DIR`, then `~/.d4rl/datasets/` — D4RL's own cache
 * (d4rl/offline_env.py: `D4RL_DATASET_DIR`, default `~/.d4rl/datasets`; released D4RL puts a file
 * straight in it, D4RL's master branch under `offline_rl/gym_mujoco_v2/`, so both are looked at).
 * Minari datasets: `$MINARI_DATASETS_PATH/<id>/data/`, then `~/.minari/datasets/<id>/data/`
 * (minari/storage/datasets_root_dir.py and local.py). Deno's permission lists cannot expand `~` or
 * variables, so these functions only name the candidates; a candidate this process may not read is
 * reported, never silently treated as absent when the user named it through a variable.
 * @module
 */

import { join } from "node:path";
import { fail, PipelineFailure } from "../core/errors.ts";
import type { ProgressFactory } from "../core/progress.ts";
import { download, type RemoteFile } from "./download.ts";

/** Reads one environment variable; `undefined` when unset or not readable. */
export type EnvLookup = (name: string) => string | undefined;

/** The process environment, read only where this process has been allowed to read it (never throws). */
export const processEnv: EnvLookup = (name) =>
  Deno.permissions.querySync({ name: "env", variable: name }).state === "granted"
    ? Deno.env.get(name)
    : undefined;

/** One directory a dataset file is looked for in. */
export interface SearchDir {
  /** The directory. */
  readonly dir: string;
  /** How it was chosen, for messages: `data/d4rl`, `$D4RL_DATASET_DIR`, `~/.d4rl/datasets`, … */
  readonly origin: string;
  /** Named by the user through a variable: an unreadable one is an error, not a skip. */
  readonly explicit: boolean;
}

/** The variable naming D4RL's cache directory (as D4RL itself reads it). */
export const D4RL_DIR_VAR = "D4RL_DATASET_DIR";
/** The variable naming Minari's datasets root (as Minari itself reads it). */
export const MINARI_DIR_VAR = "MINARI_DATASETS_PATH";
/** The variable listing D4RL mirrors: base URLs, separated by commas or spaces. */
export const MIRRORS_VAR = "OBD_D4RL_MIRRORS";

/** The D4RL directories in the order they are searched: `projectDir`, `$D4RL_DATASET_DIR`, `~/.d4rl/datasets`. */
export function d4rlSearchDirs(projectDir: string, env: EnvLookup = processEnv): SearchDir[] {
  const dirs: SearchDir[] = [{ dir: projectDir, origin: projectDir, explicit: false }];
  const custom = env(D4RL_DIR_VAR);
  if (custom) dirs.push({ dir: custom, origin: `$${D4RL_DIR_VAR}`, explicit: true });
  const home = env("HOME");
  if (home) dirs.push({ dir: join(home, ".d4rl", "datasets"), origin: "~/.d4rl/datasets", explicit: false });
  return dirs;
}

/** The Minari dataset roots in the order they are searched: `$MINARI_DATASETS_PATH`, `~/.minari/datasets`. */
export function minariSearchDirs(env: EnvLookup = processEnv): SearchDir[] {
  const dirs: SearchDir[] = [];
  const custom = env(MINARI_DIR_VAR);
  if (custom) dirs.push({ dir: custom, origin: `$${MINARI_DIR_VAR}`, explicit: true });
  const home = env("HOME");
  if (home) {
    dirs.push({ dir: join(home, ".minari", "datasets"), origin: "~/.minari/datasets", explicit: false });
  }
  return dirs;
}

/** A file found by {@link findFile}. */
export interface FoundFile {
  /** Its path. */
  readonly path: string;
  /** The search directory it was found under. */
  readonly from: SearchDir;
}

/** What {@link findFile} found: the first match, and the directories it could not look into. */
export interface FileSearch {
  /** The first candidate that exists, in search order. */
  readonly found?: FoundFile;
  /** Candidates this process may not read (`--allow-read` does not cover them). */
  readonly unreadable: readonly { readonly path: string; readonly from: SearchDir }[];
}

/**
 * Looks for the first of `relativePaths` under each directory of `dirs`, in order (directory by
 * directory, then path by path). Never throws for a missing or unreadable candidate: an unreadable one
 * is listed in `unreadable` so that the caller can say which flag would open it.
 */
export async function findFile(
  dirs: readonly SearchDir[],
  relativePaths: readonly string[],
): Promise<FileSearch> {
  const unreadable: { path: string; from: SearchDir }[] = [];
  for (const from of dirs) {
    for (const relativePath of relativePaths) {
      const path = join(from.dir, relativePath);
      const state = (await Deno.permissions.query({ name: "read", path })).state;
      if (state !== "granted") {
        unreadable.push({ path, from });
        continue;
      }
      const exists = await Deno.stat(path).then((s) => s.isFile || s.isDirectory, () => false);
      if (exists) return { found: { path, from }, unreadable };
    }
  }
  return { unreadable };
}

/**
 * Fails when a directory the user named through a variable could not be searched: the task's
 * `--allow-read` grants `.`, `~/.d4rl/datasets` and `~/.minari/datasets` only, since Deno's permission
 * lists cannot hold variables.
 */
export function refuseUnreadable(search: FileSearch, what: string): void {
  const named = search.unreadable.find((u) => u.from.explicit);
  if (named === undefined || search.found !== undefined) return;
  fail(
    "io",
    `${what}: ${named.from.origin} is ${named.from.dir}, which this command may not read (${named.path})`,
    `run with --allow-read=.,${named.from.dir} added (deno run … commands/pipeline.ts), or link the dataset under data/`,
  );
}

/**
 * The mirror base URLs of `$OBD_D4RL_MIRRORS` (comma- or space-separated, each `http://` or
 * `https://`, a trailing `/` added). A malformed entry fails with "config" naming the variable.
 */
export function d4rlMirrors(env: EnvLookup = processEnv): string[] {
  const raw = env(MIRRORS_VAR)?.trim();
  if (!raw) return [];
  return raw.split(/[\s,]+/).filter((s) => s !== "").map((entry) => {
    let url: URL;
    try {
      url = new URL(entry);
    } catch {
      fail("config", `${MIRRORS_VAR}: '${entry}' is not a URL`, "list base URLs such as https://host/d4rl/");
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      fail(
        "config",
        `${MIRRORS_VAR}: '${entry}' is not an http(s) URL`,
        "list base URLs such as https://host/d4rl/",
      );
    }
    return url.href.endsWith("/") ? url.href : url.href + "/";
  });
}

/** What is known about a file to fetch from several places. */
export interface MirroredFile {
  /** Base name on every server, e.g. `hopper_medium_replay-v2.hdf5`. */
  readonly fileName: string;
  /** Where it must end up. */
  readonly path: string;
  /** Exact size, when known. */
  readonly bytes?: number;
  /** Lower-case hex sha256, when known. */
  readonly sha256?: string;
}

/**
 * Downloads `file` from the first of `urls` that delivers it whole and with the known size and
 * sha256 (each try is {@link download}: atomic, checked, nothing left under the final name when it
 * fails). A URL whose host this process may not reach is skipped, said so. `note` is told of every
 * failed try. When every URL fails, the "network" error lists each try in one line.
 * Returns the sha256 and the URL that served the file.
 */
export async function downloadFromMirrors(
  file: MirroredFile,
  urls: readonly string[],
  progress: ProgressFactory,
  note: (line: string) => void = () => {},
): Promise<{ sha256: string; url: string }> {
  const tries: string[] = [];
  for (const url of urls) {
    const host = new URL(url).host;
    if ((await Deno.permissions.query({ name: "net", host })).state !== "granted") {
      tries.push(`${url}: host ${host} not allowed (--allow-net)`);
      note(`skipped ${url}: this command may not reach ${host} (add it to --allow-net)`);
      continue;
    }
    const remote: RemoteFile = { url, path: file.path, bytes: file.bytes, sha256: file.sha256 };
    try {
      return { sha256: await download(remote, progress), url };
    } catch (caught) {
      // A server's fault (unreachable, HTTP error, wrong bytes) moves on to the next; ours does not.
      const kind = caught instanceof PipelineFailure ? caught.error.kind : undefined;
      if (kind !== "network" && kind !== "checksum") throw caught;
      const message = (caught as PipelineFailure).error.message;
      tries.push(`${url}: ${message}`);
      note(`download from ${url} failed: ${message}`);
    }
  }
  fail(
    "network",
    `${file.path} is missing and no source delivered it: ${tries.join("; ")}`,
    `put ${file.fileName} under data/d4rl/, $${D4RL_DIR_VAR} or ~/.d4rl/datasets, or list a reachable mirror in $${MIRRORS_VAR}; offline, run the embedded dataset: deno task pipeline embedded`,
  );
}
