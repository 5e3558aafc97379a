/**
 * HDF5 files in the D4RL layout, read and written through h5wasm (HDF5 compiled to WebAssembly).
 *
 * Three things about h5wasm 0.10.3 shape this module:
 *
 * 1. Its Emscripten runtime enumerates every environment variable when it starts, which Deno refuses
 *    under a scoped `--allow-env=NAMES` (or none at all). {@link loadH5wasm} starts it once with an
 *    empty `process.env` and is the only place that may import h5wasm.
 * 2. Its C wrappers ignore most HDF5 status codes: a failed attribute or dataset write is silently
 *    skipped (HDF5 prints `HDF5-DIAG` to stderr and h5wasm returns as if it had worked). So every file
 *    we write is read back and compared before it is renamed into place, and reads call the low-level
 *    `get_dataset_data` themselves to see its status.
 * 3. It cannot create HDF5 enum datatypes, yet h5py reads a dataset as `bool` only when its type is
 *    h5py's enum `{FALSE: 0, TRUE: 1}` over int8 — which is how real D4RL files store `terminals` and
 *    `timeouts`. We write those as int8 and then rewrite their datatype message in the closed file;
 *    see `patchInt8ToBoolEnum` below for the exact (small, verified) surgery.
 *
 * Files are written in HDF5's oldest on-disk format (superblock 0, version-1 object headers), like h5py's
 * default and the published D4RL files, and never newer than HDF5 1.10 can read.
 * The work is split by job: `hdf5_read.ts` (starting h5wasm, reading), `hdf5_write.ts` (writing) and
 * `hdf5_bool.ts` (the boolean patch); this module re-exports their public names.
 * @module
 */

export {
  type AttrValue,
  D4RL_FLAG_KEYS,
  D4RL_FLOAT_KEYS,
  type D4rlArrays,
  type H5Array,
  type H5Wasm,
  type Hdf5FileFacts,
  inspectHdf5File,
  loadH5wasm,
  type RawD4rlDatasets,
  type RawD4rlFile,
  readD4rlFile,
  type WritableAttr,
} from "./hdf5_read.ts";
export { atomicWrite, writeD4rlFile, writeFloatDatasets } from "./hdf5_write.ts";
