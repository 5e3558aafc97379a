/**
 * Checkpoints that let long loops resume: a value (objects with typed arrays, as stage outputs)
 * saved to a directory atomically (`core/atomic.ts`), with sha256 of every file, so an
 * interrupted save leaves the previous checkpoint intact and a damaged one is ignored, not loaded.
 * @module
 */

import { dirname, join } from "node:path";
import { writeAtomic } from "./atomic.ts";
import { decodeArtifact, encodeArtifact } from "./artifact.ts";
import { sha256Hex } from "./hash.ts";
import type { CheckpointStore } from "./stage.ts";

const INDEX = "checkpoint.json";

/** Saves `value` to `dir` atomically (replacing an older checkpoint there). */
export async function saveCheckpoint(dir: string, value: unknown): Promise<void> {
  await Deno.mkdir(dirname(dir), { recursive: true });
  await writeAtomic(dir, async (tmp) => {
    await Deno.mkdir(tmp);
    const sums: Record<string, string> = {};
    for (const [name, bytes] of encodeArtifact(value)) {
      await Deno.writeFile(join(tmp, name), bytes);
      sums[name] = await sha256Hex(bytes);
    }
    await Deno.writeTextFile(
      join(tmp, INDEX),
      JSON.stringify({ savedAt: new Date().toISOString(), files: sums }),
    );
  });
}

/** Loads the checkpoint in `dir`; `undefined` when there is none or it fails its checksums. */
export async function loadCheckpoint(dir: string): Promise<unknown | undefined> {
  let index: { files: Record<string, string> };
  try {
    index = JSON.parse(await Deno.readTextFile(join(dir, INDEX)));
  } catch {
    return undefined;
  }
  const files = new Map<string, Uint8Array>();
  for (const [name, sum] of Object.entries(index.files)) {
    const bytes = await Deno.readFile(join(dir, name)).catch(() => undefined);
    if (!bytes || await sha256Hex(bytes) !== sum) return undefined;
    files.set(name, bytes);
  }
  return decodeArtifact(files);
}

/** Removes a checkpoint once the work it protected is done. */
export async function removeCheckpoint(dir: string): Promise<void> {
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}

/** A {@link CheckpointStore} on the directory `dir` (what the runtime gives each stage under its work directory). */
export function directoryCheckpoint(dir: string): CheckpointStore {
  return { load: () => loadCheckpoint(dir), save: (value) => saveCheckpoint(dir, value) };
}
