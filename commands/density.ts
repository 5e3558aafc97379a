/**
 * `deno task density <dataset|file.hdf5> --bandwidth <value|scott|silverman> [--alpha a]
 *   [--reference M] [--clip-quantile q] [--seed s] [--tolerance e] [--method tree|brute] --out <file.hdf5>`
 *
 * Writes the log-density and the weight of every state of a dataset to a new HDF5 file (datasets
 * `log_density` and `weight`, one value per row of the dataset's `observations`, float32), for
 * inspection outside the pipeline; the settings, the bandwidth used and summary statistics are root
 * attributes. The dataset is `embedded`, a D4RL alias already downloaded under `data/d4rl/`, or a
 * path to an HDF5 file in D4RL layout. States are normalized with their mean and std + 1e-3, as the
 * load stage does (over every row of the file, which is the load stage's Q-learning view whenever
 * the file stores `next_observations`). `--out` is never overwritten.
 * @module
 */

import { loadD4rlDataset, observationStats } from "../datasets/d4rl.ts";
import { writeFloatDatasets } from "../datasets/hdf5.ts";
import { computeStateDensity, DEFAULT_DENSITY_CONFIG, type DensityConfig } from "../stages/density.ts";
import { locateDataset } from "../stages/load.ts";
import { envBody } from "../envs/specs.ts";
import { BACKEND_ENV, initBackend, requestedBackend } from "../numerics/backend.ts";
import { helpText, parseCommandLine } from "../core/cli.ts";
import { type PipelineError, pipelineError, toPipelineError } from "../core/errors.ts";
import { TOOL_VERSION } from "../core/version.ts";
import { exitWithError, freshOutput, isError, openRun, runCommand } from "./common.ts";

const d = DEFAULT_DENSITY_CONFIG;
const OPTIONS = {
  bandwidth: {
    type: "string",
    help: "kernel bandwidth in normalized units: scott, silverman or a value > 0 (required)",
  },
  alpha: { type: "string", help: `temperature α of w ∝ p̂^(−α), ≥ 0 (default ${d.alpha})` },
  reference: { type: "string", help: "reference states: a seeded subsample of M (default 0: all states)" },
  "clip-quantile": {
    type: "string",
    help: `clip weights at this quantile, in (0, 1] (default ${d.clipQuantile}; 1: none)`,
  },
  seed: { type: "string", help: `seed of the reference subsample (default ${d.seed})` },
  tolerance: { type: "string", help: `relative error bound of the pruned estimate (default ${d.tolerance})` },
  method: { type: "string", help: "tree (default: pruned) or brute (every pair, tensor backend)" },
  out: { type: "string", help: "output HDF5 file under data/ (required; never overwritten)" },
  help: { type: "boolean", help: "show this help" },
} as const;
const USAGE =
  "deno task density <embedded|d4rl alias|file.hdf5> --bandwidth <value|scott|silverman> [options] --out data/<file>.hdf5";

function numberOption(
  name: string,
  raw: string | undefined,
  fallback: number,
  check: (v: number) => boolean,
  expected: string,
): number | PipelineError {
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (raw.trim() === "" || !check(v)) {
    return pipelineError("config", `--${name} ${raw} is not ${expected}`, `e.g. --${name} ${fallback}`);
  }
  return v;
}

/** Turns the command line into a density config, or the first error. */
export function densityConfigFromArgs(v: Record<string, unknown>): DensityConfig | PipelineError {
  const raw = v.bandwidth as string | undefined;
  if (raw === undefined) {
    return pipelineError(
      "config",
      "--bandwidth is required",
      "e.g. --bandwidth scott, --bandwidth silverman or --bandwidth 0.3",
    );
  }
  let bandwidth: DensityConfig["bandwidth"];
  if (raw === "scott" || raw === "silverman") bandwidth = raw;
  else {
    const h = Number(raw);
    if (raw.trim() === "" || !Number.isFinite(h) || h <= 0) {
      return pipelineError(
        "config",
        `--bandwidth ${raw} is not scott, silverman or a finite number > 0`,
        "e.g. --bandwidth scott or --bandwidth 0.3",
      );
    }
    bandwidth = h;
  }
  const alpha = numberOption(
    "alpha",
    v.alpha as string | undefined,
    d.alpha,
    (x) => Number.isFinite(x) && x >= 0,
    "a finite number ≥ 0",
  );
  if (isError(alpha)) return alpha;
  const referenceSize = numberOption(
    "reference",
    v.reference as string | undefined,
    d.referenceSize,
    (x) => Number.isInteger(x) && x >= 0,
    "an integer ≥ 0",
  );
  if (isError(referenceSize)) return referenceSize;
  const clipQuantile = numberOption(
    "clip-quantile",
    v["clip-quantile"] as string | undefined,
    d.clipQuantile,
    (x) => x > 0 && x <= 1,
    "in (0, 1]",
  );
  if (isError(clipQuantile)) return clipQuantile;
  const seed = numberOption(
    "seed",
    v.seed as string | undefined,
    d.seed,
    (x) => Number.isInteger(x) && x >= 0,
    "a non-negative integer",
  );
  if (isError(seed)) return seed;
  const tolerance = numberOption(
    "tolerance",
    v.tolerance as string | undefined,
    d.tolerance,
    (x) => x >= 1e-5 && x < 1,
    "in [1e-5, 1)",
  );
  if (isError(tolerance)) return tolerance;
  const method = (v.method as string | undefined) ?? d.method;
  if (method !== "tree" && method !== "brute") {
    return pipelineError("config", `--method ${method} is not tree or brute`, "tree is the default");
  }
  return { ...d, bandwidth, alpha, referenceSize, clipQuantile, seed, tolerance, method };
}

async function main(args: string[]): Promise<void> {
  const parsed = parseCommandLine(args, OPTIONS, 1);
  if (isError(parsed)) exitWithError(parsed);
  if (parsed.values.help) {
    console.log(helpText(USAGE, OPTIONS));
    return;
  }
  const name = parsed.positionals[0];
  if (!name) exitWithError(pipelineError("config", "no dataset given", `usage: ${USAGE}`));
  const config = densityConfigFromArgs(parsed.values);
  if (isError(config)) exitWithError(config);
  const out = parsed.values.out as string | undefined;
  if (!out || !/\.(hdf5|h5)$/i.test(out)) {
    exitWithError(
      pipelineError(
        "config",
        out ? `--out ${out} does not end in .hdf5` : "--out is required",
        "e.g. --out data/density/hopper_density.hdf5",
      ),
    );
  }
  await freshOutput(out);
  let backendLabel = "none (tree method)";
  if (config.method === "brute") {
    const backendName = requestedBackend(undefined, Deno.env.get(BACKEND_ENV));
    if (isError(backendName)) exitWithError(backendName);
    const backend = await initBackend(backendName);
    if (isError(backend)) exitWithError(backend);
    backendLabel = backend.label;
  }
  const run = openRun(`density-${name.split("/").pop()}`);
  try {
    const located = await locateDataset(name, run.progress);
    const data = await loadD4rlDataset(located.file, { env: located.env ? envBody(located.env) : undefined });
    const stats = observationStats(data.observations, data.obsDim);
    console.error(
      `density: ${located.file} (${data.n} states, ${data.obsDim} dimensions) → ${out}; log ${run.dir}/metrics.jsonl`,
    );
    const progress = run.progress("density", data.n);
    const started = performance.now();
    const result = await computeStateDensity(
      data.observations,
      data.obsDim,
      stats.mean,
      stats.std,
      config,
      (done) => progress.update(done),
    );
    progress.finish();
    const seconds = (performance.now() - started) / 1000;
    const w = result.weightStats;
    const dir = out.includes("/") ? out.slice(0, out.lastIndexOf("/")) : "";
    if (dir) await Deno.mkdir(dir, { recursive: true });
    await writeFloatDatasets(out, { log_density: result.logDensity, weight: result.weight }, {
      source: located.file,
      source_sha256: located.sha256,
      bandwidth: result.bandwidth,
      bandwidth_rule: result.bandwidthRule,
      alpha: result.alpha,
      reference_size: result.referenceSize,
      reference_seed: config.seed,
      clip_quantile: result.clipQuantile,
      clip_value: result.clipValue,
      clipped_states: result.clipped,
      dimensions: result.dimensions,
      constant_dimensions: result.constantDimensions.length ? result.constantDimensions.join(",") : "none",
      method: result.method,
      tolerance: config.tolerance,
      log_density_error_bound: result.errorBound,
      normalization: "(s - mean) / (std + 1e-3) over the file's observations",
      kernel: "Gaussian, covariance h^2 I in normalized units",
      effective_sample_size: w.effectiveSampleSize,
      weight_min: w.min,
      weight_max: w.max,
      tool_version: TOOL_VERSION,
      command: `deno task density ${args.join(" ")}`,
    });
    const summary = {
      out,
      source: located.file,
      states: result.n,
      dimensions: result.dimensions,
      constantDimensions: result.constantDimensions,
      bandwidth: +result.bandwidth.toPrecision(6),
      bandwidthRule: result.bandwidthRule,
      referenceSize: result.referenceSize,
      method: result.method,
      backend: backendLabel,
      errorBound: result.errorBound,
      seconds: +seconds.toFixed(1),
      weightMin: w.min,
      weightMax: w.max,
      weightMedian: w.quantiles.p50,
      effectiveSampleFraction: +w.effectiveSampleFraction.toFixed(4),
      clippedStates: result.clipped,
    };
    run.metrics.log({ event: "density", ...summary });
    console.log(JSON.stringify(summary));
  } catch (e) {
    exitWithError(toPipelineError(e, "density"));
  } finally {
    run.metrics.close();
  }
}

if (import.meta.main) await runCommand(main);
