/**
 * `deno task evaluate <set.hdf5> [--dataset d] [--preset paper|quick] [--set evaluate.x=…] [--seed N]`:
 * scores any synthetic set file (`stages/synset_file.ts`: ours, or one made elsewhere in that
 * layout) with the paper's protocol — fresh students trained on the set as the evaluate stage trains
 * them (the preset's `student` and `evaluate` sections; default `paper`), `students` × `episodes`
 * episodes with the evaluations' common random numbers — so sets from anywhere compare on equal
 * terms. The file is checked before any work. Prints one JSON object.
 * @module
 */

import { BACKEND_ENV, initBackend, requestedBackend } from "../numerics/backend.ts";
import { helpText, parseCommandLine } from "../core/cli.ts";
import { fail, pipelineError, toPipelineError } from "../core/errors.ts";
import { sha256Hex } from "../core/hash.ts";
import { standaloneContext } from "../core/stage.ts";
import { consoleProgress } from "../core/progress.ts";
import { createRuntime, runStage } from "../core/runtime.ts";
import { loadStage, locateDataset } from "../stages/load.ts";
import { evaluate, setEvaluationConfig } from "../stages/evaluate.ts";
import { meanScore } from "../stages/scores.ts";
import { readSynsetFile } from "../stages/synset_file.ts";
import { presetConfig, PRESETS } from "../study/obd.ts";
import { exitWithError, isError } from "./common.ts";

const OPTIONS = {
  dataset: {
    type: "string",
    help: "the dataset the set is for (embedded, a D4RL alias or a path); checks the set against it",
  },
  preset: {
    type: "string",
    help: `student and evaluation settings: ${Object.keys(PRESETS).join(", ")} (default paper)`,
  },
  set: { type: "string", multiple: true, help: "override one setting, e.g. --set evaluate.students=10" },
  seed: {
    type: "string",
    help: "seed of the students and episodes (default the file's seed attribute, else 0)",
  },
  backend: { type: "string", help: `tensor backend: wasm (default), cpu, tensorflow (or ${BACKEND_ENV})` },
  help: { type: "boolean", help: "show this help" },
} as const;
const USAGE = "deno task evaluate <set.hdf5> [--dataset d] [--preset paper|quick] [--set …] [--seed N]";

async function main(args: string[]): Promise<void> {
  const parsed = parseCommandLine(args, OPTIONS, 1);
  if (isError(parsed)) exitWithError(parsed);
  const v = parsed.values;
  const file = parsed.positionals[0];
  if (v.help || !file) {
    console.log(helpText(USAGE, OPTIONS));
    if (!file && !v.help) Deno.exit(2);
    return;
  }
  const preset = (v.preset as string | undefined) ?? "paper";
  const config = presetConfig(preset, (v.set as string[] | undefined) ?? []);
  if (isError(config)) exitWithError(config);
  const seedText = v.seed as string | undefined;
  if (seedText !== undefined && !/^\d+$/.test(seedText)) {
    exitWithError(
      pipelineError("config", `--seed ${seedText} is not a non-negative integer`, "e.g. --seed 0"),
    );
  }
  // A set has no snapshots: the learning curve is not part of this evaluation.
  const evalConfig = setEvaluationConfig(
    { ...config.evaluate, run: { ...config.evaluate.run, curve: false } },
    config.student,
  );
  try {
    const datasetName = v.dataset as string | undefined;
    const rt = createRuntime({ cacheRoot: "data/cache", backend: "none" });
    // The set is read and checked first (NaNs, dimensions, statistics), against the dataset's
    // environment when one is named; the dataset itself is loaded (cached) only to be named.
    let dataset;
    let read;
    if (datasetName) {
      const located = await locateDataset(datasetName, rt.progress);
      const loaded = await runStage(rt, loadStage, {
        file: located.file,
        sha256: located.sha256,
        env: located.env,
        ...(located.minari ? { minari: located.minari } : {}),
        minTransitions: 1,
      }, {})();
      if (loaded._tag === "Left") throw loaded.left;
      const d = loaded.right.value;
      read = await readSynsetFile(file, {
        env: d.env,
        obsDim: d.obsDim,
        actDim: d.actDim,
        name: datasetName,
      });
      dataset = {
        env: d.env,
        obsDim: d.obsDim,
        actDim: d.actDim,
        file: d.file,
        sha256: d.sha256,
        n: d.n,
        ...(d.reference ? { reference: d.reference } : {}),
      };
    } else {
      read = await readSynsetFile(file);
      const s = read.set;
      const sha = typeof read.attrs.dataset_sha256 === "string" ? read.attrs.dataset_sha256 : "unknown";
      const from = typeof read.attrs.dataset_file === "string" ? read.attrs.dataset_file : "unknown";
      dataset = { env: s.env, obsDim: s.obsDim, actDim: s.actDim, file: from, sha256: sha, n: 0 };
    }
    const fileSeed = typeof read.attrs.seed === "number" ? read.attrs.seed : 0;
    const seed = seedText !== undefined ? Number(seedText) : fileSeed;
    const backendName = requestedBackend(v.backend as string | undefined, Deno.env.get(BACKEND_ENV));
    if (isError(backendName)) exitWithError(backendName);
    const backend = await initBackend(backendName);
    if (isError(backend)) exitWithError(backend);
    const method = typeof read.attrs.method === "string" ? read.attrs.method : "set";
    console.error(
      `evaluate: ${file} (${read.set.size} pairs, ${read.set.env}), preset ${preset}: ${evalConfig.students} students × ${evalConfig.episodes} episodes, seed ${seed}, backend ${backend.label}`,
    );
    const report = await evaluate(
      {
        dataset,
        distilled: { ...read.set, objective: method as never, seed, curve: [], snapshots: [] },
      },
      evalConfig,
      standaloneContext({
        backend: backend.label,
        progress: consoleProgress({
          lineIntervalMs: Number(Deno.env.get("OBD_PROGRESS_INTERVAL_MS") ?? "") || undefined,
        }),
      }),
    );
    const round = (x: number) => +x.toFixed(2);
    if (!report.final) fail("internal", "the evaluation produced no final score");
    console.log(JSON.stringify({
      file,
      sha256: await sha256Hex(await Deno.readFile(file)),
      env: report.env,
      size: read.set.size,
      method,
      preset,
      seed,
      students: evalConfig.students,
      episodes: evalConfig.episodes,
      normalizedScore: round(meanScore(report.final)),
      perStudent: report.final.normalized.map((row) => round(row.reduce((a, b) => a + b, 0) / row.length)),
      ...(report.ensemble ? { ensemble: round(meanScore(report.ensemble)) } : {}),
      ...(report.architectures
        ? {
          architectures: Object.fromEntries(
            report.architectures.map((a) => [a.name, round(meanScore(a.score))]),
          ),
        }
        : {}),
      ...(report.optimizers
        ? {
          optimizers: Object.fromEntries(report.optimizers.map((o) => [o.name, round(meanScore(o.score))])),
        }
        : {}),
      seconds: round(report.seconds),
    }));
  } catch (e) {
    exitWithError(toPipelineError(e, "evaluate"));
  }
}

if (import.meta.main) await main(Deno.args);
