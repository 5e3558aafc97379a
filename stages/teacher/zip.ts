/**
 * Reading zip archives in memory (stored and deflated entries, zip64), as `torch.save` writes them.
 * @module
 */

import { fail, PipelineFailure } from "../../core/errors.ts";

/** One file of a zip archive. */
export interface ZipEntry {
  /** Its path inside the archive. */
  readonly name: string;
  /** Compression method: 0 stored, 8 deflated. */
  readonly method: number;
  /** CRC-32 of the uncompressed bytes. */
  readonly crc32: number;
  /** Bytes in the archive. */
  readonly compressedSize: number;
  /** Bytes once inflated, as declared. */
  readonly size: number;
  /** Where its data starts in the archive. */
  readonly dataOffset: number;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (zip's checksum). */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** Lists the entries of a zip archive from its central directory (zip64 included). */
export function readZipDirectory(bytes: Uint8Array, what = "the file"): Map<string, ZipEntry> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const bad = (why: string): never =>
    fail(
      "input",
      `${what} is not a readable zip archive (${why})`,
      "give a checkpoint written by torch.save (PyTorch ≥ 1.6)",
    );
  let eocd = -1;
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 65535); i--) {
    if (view.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) bad("no end-of-central-directory record; truncated?");
  let count = view.getUint16(eocd + 10, true);
  let cdOffset = view.getUint32(eocd + 16, true);
  if (count === 0xffff || cdOffset === 0xffffffff) {
    const locator = eocd - 20;
    if (locator < 0 || view.getUint32(locator, true) !== 0x07064b50) bad("zip64 locator missing");
    const z64 = Number(view.getBigUint64(locator + 8, true));
    if (z64 + 56 > bytes.length || view.getUint32(z64, true) !== 0x06064b50) bad("zip64 record missing");
    count = Number(view.getBigUint64(z64 + 32, true));
    cdOffset = Number(view.getBigUint64(z64 + 48, true));
  }
  const entries = new Map<string, ZipEntry>();
  let p = cdOffset;
  for (let e = 0; e < count; e++) {
    if (p + 46 > bytes.length || view.getUint32(p, true) !== 0x02014b50) {
      bad(`central directory entry ${e} is damaged`);
    }
    const method = view.getUint16(p + 10, true);
    const crc = view.getUint32(p + 16, true);
    let compressedSize = view.getUint32(p + 20, true);
    let size = view.getUint32(p + 24, true);
    const nameLength = view.getUint16(p + 28, true);
    const extraLength = view.getUint16(p + 30, true);
    const commentLength = view.getUint16(p + 32, true);
    let localOffset = view.getUint32(p + 42, true);
    const name = new TextDecoder().decode(bytes.subarray(p + 46, p + 46 + nameLength));
    // Zip64 extended information: the fields saturated at 0xffffffff, in this order.
    let x = p + 46 + nameLength;
    const extraEnd = x + extraLength;
    while (x + 4 <= extraEnd) {
      const id = view.getUint16(x, true), len = view.getUint16(x + 2, true);
      if (id === 0x0001) {
        let q = x + 4;
        if (size === 0xffffffff) (size = Number(view.getBigUint64(q, true))), (q += 8);
        if (compressedSize === 0xffffffff) (compressedSize = Number(view.getBigUint64(q, true))), (q += 8);
        if (localOffset === 0xffffffff) localOffset = Number(view.getBigUint64(q, true));
      }
      x += 4 + len;
    }
    if (localOffset + 30 > bytes.length || view.getUint32(localOffset, true) !== 0x04034b50) {
      bad(`local header of ${name} is damaged`);
    }
    const dataOffset = localOffset + 30 + view.getUint16(localOffset + 26, true) +
      view.getUint16(localOffset + 28, true);
    if (dataOffset + compressedSize > bytes.length) bad(`${name} runs past the end of the file; truncated?`);
    entries.set(name, { name, method, crc32: crc, compressedSize, size, dataOffset });
    p += 46 + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** Deflate's largest possible expansion (a run of one byte): about 1032 output bytes per input byte. */
const DEFLATE_MAX_RATIO = 1032;

/**
 * The bytes of one entry (stored, or deflated), checked against its CRC-32. A deflated entry is
 * inflated into a buffer of its declared size and no further: an entry that declares more than
 * deflate can expand its compressed bytes to, or inflates past what it declares, is refused before
 * or as soon as it does, so a crafted archive cannot make the reader allocate more than the
 * declared sizes (callers bound those, see `readTorchCheckpoint`).
 */
export async function readZipEntry(
  bytes: Uint8Array,
  entry: ZipEntry,
  what = "the archive",
): Promise<Uint8Array> {
  const raw = bytes.subarray(entry.dataOffset, entry.dataOffset + entry.compressedSize);
  const refuse = (why: string): never =>
    fail(
      "input",
      `${what}: ${entry.name} ${why}`,
      "the checkpoint is damaged or crafted; re-save it with torch.save",
    );
  let data: Uint8Array;
  if (entry.method === 0) {
    if (entry.size !== entry.compressedSize) {
      refuse(`is stored uncompressed in ${entry.compressedSize} bytes but declares ${entry.size}`);
    }
    data = raw;
  } else if (entry.method === 8) {
    if (entry.size > DEFLATE_MAX_RATIO * entry.compressedSize + 64) {
      refuse(
        `declares ${entry.size} bytes inflated from ${entry.compressedSize}, more than deflate can expand to`,
      );
    }
    data = new Uint8Array(entry.size);
    let filled = 0;
    // Compressed bytes go in 4 KiB at a time (at most about 4 MiB out each) and the output is taken
    // as it comes, so an entry that inflates past its declared size is stopped there.
    const inflater = new DecompressionStream("deflate-raw");
    const writer = inflater.writable.getWriter();
    const reader = inflater.readable.getReader();
    const feeding = (async () => {
      for (let at = 0; at < raw.length; at += 4096) await writer.write(raw.slice(at, at + 4096));
      await writer.close();
    })();
    feeding.catch(() => {}); // its failure shows on the reading side
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (filled + value.length > entry.size) refuse(`inflates past its declared ${entry.size} bytes`);
        data.set(value, filled);
        filled += value.length;
      }
    } catch (e) {
      await reader.cancel().catch(() => {});
      await writer.abort().catch(() => {});
      if (e instanceof PipelineFailure) throw e;
      refuse(`is not valid deflate data (${(e as Error).message.split("\n")[0]})`);
    }
    if (filled !== entry.size) refuse(`inflates to ${filled} bytes, not its declared ${entry.size}`);
  } else {
    return fail(
      "input",
      `${what}: ${entry.name} uses zip compression method ${entry.method}`,
      "only stored and deflated entries are supported",
    );
  }
  if (crc32(data) !== entry.crc32) {
    fail(
      "checksum",
      `${what}: ${entry.name} fails its CRC-32 check`,
      "the checkpoint is damaged; copy it again",
    );
  }
  return data;
}
