/**
 * Fetching a dataset file once: streamed into a temporary file beside the target with a progress
 * bar, checked against the expected size and sha256 when they are known, then renamed into place.
 * An interrupted or mismatching download leaves nothing behind under the final name.
 * @module
 */

import { createHash } from "node:crypto";
import { dirname } from "node:path";
import { writeAtomic } from "../core/atomic.ts";
import { fail } from "../core/errors.ts";
import type { ProgressFactory } from "../core/progress.ts";

/** What is known about a remote file. */
export interface RemoteFile {
  readonly url: string;
  /** Where it must end up (e.g. `data/d4rl/hopper_medium_replay-v2.hdf5`). */
  readonly path: string;
  readonly bytes?: number;
  readonly sha256?: string;
}

/** Hex sha256 of a file, streamed (D4RL files are tens to hundreds of MB). */
export async function fileSha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path, { read: true });
  for await (const chunk of file.readable) hash.update(chunk);
  return hash.digest("hex");
}

/**
 * Checks a local file against the expected size and sha256; fails with a `checksum` error that
 * names the file and tells the user to delete it and download again.
 */
export async function verifyFile(file: RemoteFile): Promise<string> {
  const info = await Deno.stat(file.path);
  const redo = `delete ${file.path} and run again to download it from ${file.url}`;
  if (file.bytes !== undefined && info.size !== file.bytes) {
    fail(
      "checksum",
      `${file.path} has ${info.size} bytes, expected ${file.bytes} (truncated or a different file)`,
      redo,
    );
  }
  const sha256 = await fileSha256(file.path);
  if (file.sha256 !== undefined && sha256 !== file.sha256) {
    fail(
      "checksum",
      `${file.path} has sha256 ${sha256.slice(0, 12)}…, expected ${file.sha256.slice(0, 12)}…`,
      redo,
    );
  }
  return sha256;
}

/** Downloads `file.url` to `file.path` (atomically) and returns its sha256. */
export async function download(file: RemoteFile, progress: ProgressFactory): Promise<string> {
  const offlineHint =
    `download ${file.url} on a machine with internet access and put it at ${file.path}, or run the offline demo on the embedded dataset: deno task pipeline embedded`;
  let response: Response;
  try {
    response = await fetch(file.url);
  } catch (e) {
    fail(
      "network",
      `${file.path} is missing and ${file.url} could not be reached (${(e as Error).message.split("\n")[0]})`,
      offlineHint,
    );
  }
  if (!response.ok || !response.body) {
    await response.body?.cancel();
    fail("network", `${file.path} is missing and ${file.url} answered HTTP ${response.status}`, offlineHint);
  }
  const body = response.body;
  const total = file.bytes ?? Number(response.headers.get("content-length") ?? 0);
  await Deno.mkdir(dirname(file.path), { recursive: true });
  const hash = createHash("sha256");
  const bar = progress(`download ${file.url.split("/").pop()}`, total);
  let received = 0;
  let sha256 = "";
  await writeAtomic(file.path, async (tmp) => {
    using out = await Deno.open(tmp, { write: true, createNew: true });
    for await (const chunk of body) {
      hash.update(chunk);
      let written = 0;
      while (written < chunk.byteLength) written += await out.write(chunk.subarray(written));
      received += chunk.byteLength;
      bar.update(received);
    }
    bar.finish();
    sha256 = hash.digest("hex");
    if (file.bytes !== undefined && received !== file.bytes) {
      fail(
        "checksum",
        `download of ${file.url} gave ${received} bytes, expected ${file.bytes}`,
        "run again; the connection was probably cut",
      );
    }
    if (file.sha256 !== undefined && sha256 !== file.sha256) {
      fail(
        "checksum",
        `download of ${file.url} has sha256 ${sha256.slice(0, 12)}…, expected ${file.sha256.slice(0, 12)}…`,
        "run again; if it persists the file on the server changed",
      );
    }
  });
  return sha256;
}
