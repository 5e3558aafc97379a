/**
 * What a grid's workers may do: the `pipeline` task's own permissions from deno.json, widened to
 * the cache and dataset files a grid names outside them, and what the grid process needs to
 * summarize its tasks itself.
 * @module
 */

import { isAbsolute, relative, resolve } from "node:path";
import { type PipelineError, pipelineError } from "../core/errors.ts";
import type { GridSpec } from "./spec.ts";

/**
 * The `--allow-*`/`--deny-*` flags of a task in a deno.json text, with `$NAME` expanded as `deno task`
 * expands it (the pipeline grants `$HOME/.d4rl/datasets`); a list entry naming a variable this process
 * cannot read, or one that is unset, is left out rather than granted literally.
 */
export function taskPermissions(denoJsonText: string, task: string): string[] {
  const command: string | undefined = JSON.parse(denoJsonText).tasks?.[task];
  if (!command) {
    throw pipelineError("config", `deno.json has no task "${task}"`, "restore the task from the repository");
  }
  const variable = (name: string) =>
    Deno.permissions.querySync({ name: "env", variable: name }).state === "granted"
      ? Deno.env.get(name)
      : undefined;
  const expand = (flag: string) => {
    const at = flag.indexOf("=");
    if (at < 0 || !flag.includes("$")) return flag;
    const entries = flag.slice(at + 1).split(",").flatMap((entry) => {
      let unset = false;
      const value = entry.replace(/\$(\w+)/g, (_, name: string) => variable(name) ?? ((unset = true), ""));
      return unset ? [] : [value];
    });
    return `${flag.slice(0, at + 1)}${entries.join(",")}`;
  };
  return command.split(/\s+/).filter((t) => /^--(allow|deny)-/.test(t)).map(expand);
}

/**
 * `flags` with more paths granted: each `--allow-read=`/`--allow-write=` list is extended (or the
 * flag added); an unscoped `--allow-read`/`--allow-write` already grants everything.
 */
export function widenPermissions(
  flags: readonly string[],
  extra: { readonly read?: readonly string[]; readonly write?: readonly string[] },
): string[] {
  let out = [...flags];
  for (const [kind, paths] of [["read", extra.read ?? []], ["write", extra.write ?? []]] as const) {
    if (!paths.length || out.includes(`--allow-${kind}`)) continue;
    const at = out.findIndex((f) => f.startsWith(`--allow-${kind}=`));
    if (at < 0) {
      out = [...out, `--allow-${kind}=${[...new Set(paths)].join(",")}`];
      continue;
    }
    const current = out[at].slice(`--allow-${kind}=`.length).split(",");
    out[at] = `--allow-${kind}=${[...new Set([...current, ...paths])].join(",")}`;
  }
  return out;
}

const inside = (path: string, dir: string) => {
  const rel = relative(resolve(dir), resolve(path));
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
};

/** Whether a dataset argument names a file (rather than `embedded` or a D4RL alias). */
const isPath = (dataset: string) =>
  !dataset.startsWith("minari:") && (dataset.includes("/") || /\.(hdf5|h5)$/.test(dataset));

/**
 * A worker's permissions: the `pipeline` task's, plus reading and writing the cache directory and
 * reading dataset files where they lie outside what the task grants, plus `/etc/hostname` so that
 * its cache locks name their host (which lets a lock of a crashed worker be broken at once).
 */
export function workerPermissions(
  pipelineFlags: readonly string[],
  spec: Pick<GridSpec, "cacheDir" | "datasets">,
): string[] {
  const read = [spec.cacheDir, ...spec.datasets.filter(isPath)].filter((p) => !inside(p, "."));
  const write = inside(spec.cacheDir, "data") ? [] : [spec.cacheDir];
  return widenPermissions(pipelineFlags, { read: [...read, "/etc/hostname"], write });
}

/**
 * The deno.json task whose permissions a worker gets: `pipeline-native` (FFI for libtensorflow)
 * for the `tensorflow` backend, else `pipeline`.
 */
export function workerTask(backend: string): "pipeline" | "pipeline-native" {
  return backend === "tensorflow" ? "pipeline-native" : "pipeline";
}

/**
 * What the grid process itself must be allowed, to summarize in-process: reading (and, for a
 * stage not yet cached, writing) the cache, and reading dataset files. Returns the first missing
 * permission as a config error naming the flags to add, so a grid fails before it runs anything.
 */
export function checkGridPermissions(
  spec: Pick<GridSpec, "cacheDir" | "datasets">,
): PipelineError | undefined {
  const needs: [Deno.PermissionDescriptor, string][] = [
    [{ name: "read", path: spec.cacheDir }, `--allow-read=.,${spec.cacheDir}`],
    [{ name: "write", path: spec.cacheDir }, `--allow-write=data,${spec.cacheDir}`],
    ...spec.datasets.filter(isPath).map((
      d,
    ): [Deno.PermissionDescriptor, string] => [{ name: "read", path: d }, `--allow-read=.,${d}`]),
  ];
  for (const [descriptor, flag] of needs) {
    if (Deno.permissions.querySync(descriptor).state !== "granted") {
      const what = `${descriptor.name} ${(descriptor as { path: string }).path}`;
      return pipelineError(
        "config",
        `the grid summarizes its tasks itself and may not ${what}`,
        `run it as deno run <the grid task's flags, with ${flag}> commands/grid.ts …, or keep the cache and datasets under data/`,
      );
    }
  }
  return undefined;
}
