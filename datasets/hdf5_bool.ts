/**
 * Retyping an int8 dataset as h5py's boolean enum in a closed HDF5 file: h5wasm cannot create enum
 * datatypes, and h5py reads a dataset as `bool` only with that enum, which is how D4RL stores its flags.
 * @module
 */

import { fail } from "../core/errors.ts";
import { readAt } from "./hdf5_read.ts";

/** The datatype message h5wasm writes for int8: fixed-point, version 1, little-endian, signed, 1 byte, precision 8. */
const INT8_TYPE = Uint8Array.of(0x10, 0x08, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x08, 0x00);

/**
 * h5py's boolean type, byte for byte as h5py writes it into a version-1 object header (taken from a
 * file written by h5py 3.7 / HDF5 1.10): an enum (class 8, version 1) of 2 members, 1 byte, over the
 * int8 type above, member names NUL-padded to 8 bytes, then the values 0 and 1, padded to 40 bytes.
 */
// deno-fmt-ignore
const BOOL_ENUM_TYPE = Uint8Array.of(
  0x18, 0x02, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // enum v1, 2 members; element size 1
  ...INT8_TYPE, // base type
  ...new TextEncoder().encode("FALSE\0\0\0"),
  ...new TextEncoder().encode("TRUE\0\0\0\0"),
  0x00, 0x01, 0x00, 0x00, // values FALSE = 0, TRUE = 1; padding
);

const MSG_NULL = 0x0000;
const MSG_DATATYPE = 0x0003;
const MSG_CONTINUATION = 0x0010;
const MSG_FLAG_CONSTANT = 0x01;
const V1_MESSAGE_HEADER = 8;

interface HeaderChunk {
  readonly address: number;
  readonly bytes: Uint8Array;
  dirty: boolean;
}

interface HeaderMessage {
  readonly chunk: HeaderChunk;
  readonly offset: number; // of the 8-byte message header within the chunk
  readonly type: number;
  readonly size: number; // of the message data
}

/**
 * Turns the int8 dataset whose version-1 object header is at `address` into an h5py boolean dataset,
 * in place, in a closed HDF5 file. The data bytes (0/1) are already what the enum stores; only the
 * datatype message changes, and it grows from 12 to 40 bytes. HDF5 gives every dataset header at least
 * 256 bytes, the rest as a NULL (free-space) message, so: the old datatype message becomes NULL, and the
 * new one is written at the start of a free NULL message, the remainder staying a (smaller) NULL message.
 * Version-1 headers have no checksum; their message count is updated. Anything unexpected — another
 * header version, another type, no room — fails with "internal" rather than guessing; the caller then
 * discards the file. The result is checked by reading it back with HDF5 (`writeD4rlFile` in hdf5_write.ts).
 */
export async function patchInt8ToBoolEnum(file: Deno.FsFile, address: number, label: string): Promise<void> {
  const broken: (why: string) => never = (why) =>
    fail("internal", `cannot store ${label} as h5py booleans: ${why}`, "please report this; it is a bug");
  const prefix = await readAt(file, address, 16, label);
  if (prefix[0] !== 1) broken(`object header version ${prefix[0]} (expected 1)`);
  const view = new DataView(prefix.buffer);
  const messageCount = view.getUint16(2, true);
  const chunks: HeaderChunk[] = [
    {
      address: address + 16,
      bytes: await readAt(file, address + 16, view.getUint32(8, true), label),
      dirty: false,
    },
  ];
  const messages: HeaderMessage[] = [];
  for (let c = 0; c < chunks.length; c++) {
    const chunk = chunks[c];
    const data = new DataView(chunk.bytes.buffer);
    for (let at = 0; at + V1_MESSAGE_HEADER <= chunk.bytes.length;) {
      const type = data.getUint16(at, true);
      const size = data.getUint16(at + 2, true);
      if (at + V1_MESSAGE_HEADER + size > chunk.bytes.length) broken("a header message overruns its chunk");
      messages.push({ chunk, offset: at, type, size });
      if (type === MSG_CONTINUATION) {
        const next = Number(data.getBigUint64(at + 8, true));
        const length = Number(data.getBigUint64(at + 16, true));
        chunks.push({ address: next, bytes: await readAt(file, next, length, label), dirty: false });
      }
      at += V1_MESSAGE_HEADER + size;
    }
  }
  if (messages.length !== messageCount) {
    broken(`found ${messages.length} header messages, header says ${messageCount}`);
  }
  const types = messages.filter((m) => m.type === MSG_DATATYPE);
  if (types.length !== 1) broken(`found ${types.length} datatype messages`);
  const old = types[0];
  const oldBytes = old.chunk.bytes.subarray(
    old.offset + V1_MESSAGE_HEADER,
    old.offset + V1_MESSAGE_HEADER + 12,
  );
  if (old.size < 12 || !INT8_TYPE.every((b, i) => oldBytes[i] === b)) {
    broken("the dataset is not stored as int8");
  }
  const need = BOOL_ENUM_TYPE.length;
  const hole = messages.find((m) =>
    m.type === MSG_NULL && (m.size === need || m.size >= need + V1_MESSAGE_HEADER)
  );
  if (hole === undefined) broken(`no free space of ${need} bytes in the object header`);

  writeMessageHeader(old.chunk.bytes, old.offset, MSG_NULL, old.size, 0);
  old.chunk.bytes.fill(0, old.offset + V1_MESSAGE_HEADER, old.offset + V1_MESSAGE_HEADER + old.size);
  writeMessageHeader(hole.chunk.bytes, hole.offset, MSG_DATATYPE, need, MSG_FLAG_CONSTANT);
  hole.chunk.bytes.set(BOOL_ENUM_TYPE, hole.offset + V1_MESSAGE_HEADER);
  let count = messageCount;
  if (hole.size > need) {
    const rest = hole.offset + V1_MESSAGE_HEADER + need;
    writeMessageHeader(hole.chunk.bytes, rest, MSG_NULL, hole.size - need - V1_MESSAGE_HEADER, 0);
    count += 1;
  }
  old.chunk.dirty = hole.chunk.dirty = true;
  view.setUint16(2, count, true);
  await writeAt(file, address, prefix);
  for (const chunk of chunks) if (chunk.dirty) await writeAt(file, chunk.address, chunk.bytes);
}

function writeMessageHeader(bytes: Uint8Array, at: number, type: number, size: number, flags: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  view.setUint16(at, type, true);
  view.setUint16(at + 2, size, true);
  bytes.fill(0, at + 4, at + 8);
  bytes[at + 4] = flags;
}

async function writeAt(file: Deno.FsFile, position: number, bytes: Uint8Array): Promise<void> {
  await file.seek(position, Deno.SeekMode.Start);
  for (let written = 0; written < bytes.length;) written += await file.write(bytes.subarray(written));
}
