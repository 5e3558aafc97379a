/**
 * Config overrides from the command line: `--set distill.steps=2000`. A setting must already exist
 * in the preset (so a typo is an error, not a silently ignored key) and the new value must parse as
 * the type of the value it replaces.
 * @module
 */

import { type PipelineError, pipelineError } from "../core/errors.ts";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** All dotted paths to leaf settings of a config object. */
export function settingPaths(config: Readonly<Record<string, unknown>>, prefix = ""): string[] {
  return Object.entries(config).flatMap(([k, v]) =>
    v !== null && typeof v === "object" && !Array.isArray(v)
      ? settingPaths(v as Record<string, unknown>, `${prefix}${k}.`)
      : [`${prefix}${k}`]
  );
}

/** Returns a copy of `config` with `assignments` (`path=value`) applied, or the first error. */
export function applyOverrides<T extends object>(
  config: T,
  assignments: readonly string[],
): T | PipelineError {
  const out = structuredClone(config) as Record<string, Json>;
  for (const assignment of assignments) {
    const eq = assignment.indexOf("=");
    if (eq <= 0) {
      return pipelineError(
        "config",
        `--set "${assignment}" is not of the form section.name=value`,
        "e.g. --set distill.steps=2000",
      );
    }
    const path = assignment.slice(0, eq).trim();
    const raw = assignment.slice(eq + 1).trim();
    const parts = path.split(".");
    let node: Record<string, Json> = out;
    for (const part of parts.slice(0, -1)) {
      const next = node[part];
      if (next === null || typeof next !== "object" || Array.isArray(next)) {
        return unknownSetting(path, config as Record<string, unknown>);
      }
      node = next as Record<string, Json>;
    }
    const leaf = parts[parts.length - 1];
    if (
      !(leaf in node) || (node[leaf] !== null && typeof node[leaf] === "object" && !Array.isArray(node[leaf]))
    ) {
      return unknownSetting(path, config as Record<string, unknown>);
    }
    const parsed = parseLike(node[leaf], raw, path);
    if (typeof parsed === "object" && parsed !== null && "kind" in (parsed as object)) {
      return parsed as PipelineError;
    }
    node[leaf] = parsed as Json;
  }
  return out as T;
}

function unknownSetting(path: string, config: Readonly<Record<string, unknown>>): PipelineError {
  const paths = settingPaths(config);
  const near = paths.filter((p) => p.split(".")[0] === path.split(".")[0]);
  return pipelineError(
    "config",
    `unknown setting "${path}"`,
    `valid settings: ${(near.length ? near : paths).join(", ")}`,
  );
}

function parseLike(current: Json, raw: string, path: string): Json | PipelineError {
  if (typeof current === "number") {
    const n = Number(raw);
    if (raw === "" || !Number.isFinite(n)) {
      return pipelineError(
        "config",
        `${path}=${raw} is not a finite number`,
        `give a number, e.g. --set ${path}=${current}`,
      );
    }
    return n;
  }
  if (typeof current === "boolean") {
    if (raw === "true" || raw === "false") return raw === "true";
    return pipelineError("config", `${path}=${raw} is not a boolean`, `give true or false`);
  }
  if (Array.isArray(current)) {
    const items = raw === "" ? [] : raw.split(",").map((s) => s.trim());
    const sample = current[0];
    if (typeof sample === "number") {
      const nums = items.map(Number);
      if (nums.some((n) => !Number.isFinite(n))) {
        return pipelineError(
          "config",
          `${path}=${raw} is not a comma-separated list of numbers`,
          `e.g. --set ${path}=${current.join(",")}`,
        );
      }
      return nums;
    }
    return items;
  }
  return raw;
}
