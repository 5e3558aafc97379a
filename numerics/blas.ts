/**
 * The system's CBLAS through Deno FFI: finding and loading a library (`OBD_BLAS=auto|off|<path>`),
 * and the `cblas_sgemm` call the wasm backend's matmul kernels make on views of its heap
 * (`wasm_blas_kernels.ts`).
 *
 * Discovery tries, in order, the places OpenBLAS, MKL, BLIS and Accelerate are installed by the
 * usual package managers, skipping any path this process may not load (`--allow-ffi=<list>`), so
 * a task loads exactly the libraries its flags name. The library is made single-threaded: the
 * toolkit's own workers give the parallelism, and a BLAS thread pool per worker would oversubscribe
 * the cores.
 * @module
 */

import { type PipelineError, pipelineError } from "../core/errors.ts";

/** Environment variable choosing the BLAS: `auto` (default), `off`, or a library path. */
export const BLAS_ENV = "OBD_BLAS";

/**
 * Where the usual package managers put a CBLAS, in the order they are tried. deno.json's tasks
 * grant `--allow-ffi` to exactly these paths; `$CONDA_PREFIX/lib` is tried too when the process
 * may read `CONDA_PREFIX` and load from there.
 */
export const BLAS_CANDIDATES: readonly string[] = [
  // Debian / Ubuntu: libopenblas0-pthread, then the alternatives link (any libopenblas0-* flavour).
  "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
  // Fedora / RHEL (openblas, openblas-threads), Arch, Alpine.
  "/usr/lib64/libopenblas.so.0",
  "/usr/lib64/libopenblasp.so.0",
  "/usr/lib/libopenblas.so.0",
  // Homebrew (Apple silicon, Intel).
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
  // Intel oneAPI MKL (single dynamic library), BLIS.
  "/opt/intel/oneapi/mkl/latest/lib/libmkl_rt.so.2",
  "/opt/intel/oneapi/mkl/latest/lib/intel64/libmkl_rt.so.2",
  "/usr/lib/x86_64-linux-gnu/libblis.so.4",
  "/usr/lib/aarch64-linux-gnu/libblis.so.4",
  "/usr/lib64/libblis.so.4",
  // macOS Accelerate (in the dyld shared cache: loads although no file is on disk).
  "/System/Library/Frameworks/Accelerate.framework/Accelerate",
];

/** Library names under `$CONDA_PREFIX/lib`. */
const CONDA_NAMES = [
  "libopenblas.so.0",
  "libmkl_rt.so.2",
  "libmkl_rt.so",
  "libopenblas.dylib",
  "libmkl_rt.dylib",
];

const SYMBOLS = {
  cblas_sgemm: {
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "f32",
      "buffer",
      "i32",
    ],
    result: "void",
  },
  cblas_sgemv: {
    parameters: ["i32", "i32", "i32", "i32", "f32", "buffer", "i32", "buffer", "i32", "f32", "buffer", "i32"],
    result: "void",
    optional: true,
  },
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
  MKL_Set_Num_Threads: { parameters: ["i32"], result: "void", optional: true },
  MKL_Get_Max_Threads: { parameters: [], result: "i32", optional: true },
  MKL_Get_Version_String: { parameters: ["buffer", "i32"], result: "void", optional: true },
  bli_thread_set_num_threads: { parameters: ["i64"], result: "void", optional: true },
  bli_info_get_version_str: { parameters: [], result: "pointer", optional: true },
  // The library's own copy reads a C string into a buffer: Deno's pointer views need unscoped
  // --allow-ffi, a copy through the granted library does not.
  copyFromPointer: {
    name: "cblas_scopy",
    parameters: ["i32", "pointer", "i32", "buffer", "i32"],
    result: "void",
    optional: true,
  },
} as const;

type BlasSymbols = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** CBLAS enums (row-major layout, transpose flags). */
const ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112;

/** A loaded CBLAS. */
export interface BlasLibrary {
  /** `openblas`, `mkl`, `blis`, `accelerate` or `cblas` (another implementation). */
  readonly vendor: string;
  /** The path it was loaded from. */
  readonly path: string;
  /** Its version where the library tells it (`0.3.21`), else `""`. */
  readonly version: string;
  /** OpenBLAS's build configuration (`OpenBLAS 0.3.21 DYNAMIC_ARCH … Haswell`), else `""`. */
  readonly config: string;
  /** Threads the library computes with (1 where it could be set). */
  readonly threads: number;
  /** `wasm+openblas-0.3.21` style: recorded in manifests. */
  readonly label: string;
  /**
   * Row-major C = alpha·op(A)·op(B) + beta·C on views (any Float32Array, also into a wasm heap):
   * m × n result, inner size k, leading dimensions of the stored (untransposed) rows.
   */
  sgemm(
    transA: boolean,
    transB: boolean,
    m: number,
    n: number,
    k: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    b: Float32Array,
    ldb: number,
    beta: number,
    c: Float32Array,
    ldc: number,
  ): void;
  /** Row-major y = alpha·op(A)·x + beta·y, A of m × n stored rows (CBLAS `cblas_sgemv`). */
  sgemv(
    trans: boolean,
    m: number,
    n: number,
    alpha: number,
    a: Float32Array,
    lda: number,
    x: Float32Array,
    beta: number,
    y: Float32Array,
  ): void;
}

/** The outcome of discovery: a library, or none with the line that says why. */
export type BlasChoice =
  | { readonly found: true; readonly library: BlasLibrary }
  | { readonly found: false; readonly notice: string };

const granted = (descriptor: Deno.PermissionDescriptor): boolean => {
  try {
    return Deno.permissions.querySync(descriptor).state === "granted";
  } catch {
    return false;
  }
};

/** The value of `OBD_BLAS` where this process may read it, else `auto`. */
export function requestedBlas(): string {
  if (!granted({ name: "env", variable: BLAS_ENV })) return "auto";
  const value = Deno.env.get(BLAS_ENV)?.trim();
  return value ? value : "auto";
}

function readCString(symbols: BlasSymbols, pointer: Deno.PointerValue, bytes: number): string {
  if (pointer === null || !symbols.copyFromPointer) return "";
  const words = new Float32Array(bytes / 4);
  symbols.copyFromPointer(words.length, pointer, 1, words, 1);
  const raw = new Uint8Array(words.buffer);
  const end = raw.indexOf(0);
  return new TextDecoder().decode(raw.subarray(0, end < 0 ? raw.length : end));
}

function describe(path: string, lib: Deno.DynamicLibrary<typeof SYMBOLS>): BlasLibrary {
  const s = lib.symbols;
  let vendor = "cblas", version = "", config = "", threads = 0;
  if (s.openblas_get_config) {
    vendor = "openblas";
    s.openblas_set_num_threads?.(1);
    threads = s.openblas_get_num_threads?.() ?? 0;
    // OpenBLAS returns a static 256-byte buffer.
    config = readCString(s, s.openblas_get_config(), 256).trim();
    version = /OpenBLAS\s+(\S+)/.exec(config)?.[1] ?? "";
  } else if (s.MKL_Get_Version_String) {
    vendor = "mkl";
    s.MKL_Set_Num_Threads?.(1);
    threads = s.MKL_Get_Max_Threads?.() ?? 0;
    const buf = new Uint8Array(256);
    s.MKL_Get_Version_String(buf, buf.length);
    const text = new TextDecoder().decode(buf.subarray(0, Math.max(0, buf.indexOf(0))));
    version = /Version\s+(\S+)/.exec(text)?.[1] ?? "";
    config = text.trim();
  } else if (s.bli_info_get_version_str) {
    vendor = "blis";
    s.bli_thread_set_num_threads?.(1n);
    threads = 1;
    version = readCString(s, s.bli_info_get_version_str(), 16).trim();
  } else if (path.includes("Accelerate")) {
    vendor = "accelerate"; // threads follow VECLIB_MAXIMUM_THREADS; Accelerate has no call to set them
  }
  const sgemm = s.cblas_sgemm, sgemv = s.cblas_sgemv;
  return {
    vendor,
    path,
    version,
    config,
    threads,
    label: `wasm+${vendor}${version ? `-${version}` : ""}`,
    sgemm: (transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) =>
      sgemm(
        ROW_MAJOR,
        transA ? TRANS : NO_TRANS,
        transB ? TRANS : NO_TRANS,
        m,
        n,
        k,
        alpha,
        a,
        lda,
        b,
        ldb,
        beta,
        c,
        ldc,
      ),
    sgemv: sgemv
      ? (trans, m, n, alpha, a, lda, x, beta, y) =>
        sgemv(ROW_MAJOR, trans ? TRANS : NO_TRANS, m, n, alpha, a, lda, x, 1, beta, y, 1)
      : (trans, m, n, alpha, a, lda, x, beta, y) =>
        // every CBLAS has sgemv; this keeps the type total
        sgemm(
          ROW_MAJOR,
          trans ? TRANS : NO_TRANS,
          NO_TRANS,
          trans ? n : m,
          1,
          trans ? m : n,
          alpha,
          a,
          lda,
          x,
          1,
          beta,
          y,
          1,
        ),
  };
}

type Attempt = { library: BlasLibrary } | { error: string; missing: boolean; noSymbol: boolean };

function tryLoad(path: string): Attempt {
  try {
    return { library: describe(path, Deno.dlopen(path, SYMBOLS)) };
  } catch (e) {
    const message = (e as Error).message.split("\n")[0];
    return {
      error: message,
      missing: /no such file|not found|image not found|cannot open shared object/i.test(message) &&
        !/symbol/i.test(message),
      noSymbol: /cblas_sgemm/.test(message) || /symbol/i.test(message),
    };
  }
}

const INSTALL_HINT =
  "install OpenBLAS (Debian/Ubuntu: apt-get install libopenblas0-pthread; Fedora: dnf install openblas; macOS: brew install openblas) for native matmuls";

const cache = new Map<string, BlasChoice | PipelineError>();

/** Every place auto discovery looks, `$CONDA_PREFIX/lib` included where readable. */
export function blasCandidates(): string[] {
  const out = [...BLAS_CANDIDATES];
  if (granted({ name: "env", variable: "CONDA_PREFIX" })) {
    const prefix = Deno.env.get("CONDA_PREFIX");
    if (prefix) out.unshift(...CONDA_NAMES.map((n) => `${prefix}/lib/${n}`));
  }
  return out;
}

/**
 * Finds and loads the BLAS `request` names (`auto`, `off` or a path; default: `OBD_BLAS`).
 * A path that is missing, not a CBLAS, or not granted by `--allow-ffi` is a `config` error; with
 * `auto`, no usable library is `found: false` with the line to print. Loads once per request.
 */
export function findBlas(request: string = requestedBlas()): BlasChoice | PipelineError {
  const known = cache.get(request);
  if (known) return known;
  const result = discover(request);
  cache.set(request, result);
  return result;
}

function discover(request: string): BlasChoice | PipelineError {
  if (request === "off") return { found: false, notice: `BLAS off (${BLAS_ENV}=off): matmuls on pure wasm` };
  if (request !== "auto") {
    const path = request;
    if (!granted({ name: "ffi", path })) {
      return pipelineError(
        "config",
        `${BLAS_ENV}=${path} is not a library this command may load (it is outside the granted --allow-ffi paths)`,
        `add --allow-ffi=${path} to the deno run command (README, "Tensor backends"), or set ${BLAS_ENV}=auto`,
      );
    }
    const attempt = tryLoad(path);
    if ("library" in attempt) return { found: true, library: attempt.library };
    if (attempt.noSymbol) {
      return pipelineError(
        "config",
        `${BLAS_ENV}=${path} has no cblas_sgemm: not a CBLAS library`,
        `point ${BLAS_ENV} at OpenBLAS, MKL (libmkl_rt), BLIS or Accelerate, or set ${BLAS_ENV}=auto`,
      );
    }
    return pipelineError(
      "config",
      attempt.missing
        ? `${BLAS_ENV}=${path}: no such library file`
        : `${BLAS_ENV}=${path} cannot be loaded: ${attempt.error}`,
      `point ${BLAS_ENV} at an installed CBLAS library, or set ${BLAS_ENV}=auto (or off)`,
    );
  }
  const candidates = blasCandidates();
  const allowed = candidates.filter((path) => granted({ name: "ffi", path }));
  for (const path of allowed) {
    const attempt = tryLoad(path);
    if ("library" in attempt) return { found: true, library: attempt.library };
  }
  if (!allowed.length) {
    return {
      found: false,
      notice:
        `no BLAS: this command may load none of the BLAS libraries (no --allow-ffi for them; README, "Tensor backends"); matmuls on pure wasm`,
    };
  }
  return { found: false, notice: `no BLAS library found: matmuls on pure wasm; ${INSTALL_HINT}` };
}
