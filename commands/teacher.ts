/**
 * `deno task teacher <command> …`: teachers outside the full pipeline.
 *
 *   train [dataset] [--algorithm td3bc|calql] [--steps N] [--set name=value] [--out <dir>]
 *       runs load → teacher through the cache (data/cache) and prints the teacher's normalized return
 *   import <file.pt> --out <dir> [--dataset <name>] [--env <env>]
 *       converts a CORL Cal-QL checkpoint (torch.save zip; read without Python) to a saved teacher,
 *       normalizing with the dataset's statistics when given (CORL checkpoints store none)
 *   act <dir> --states <file.json>
 *       prints {"actions": [[…]], "q": […]}: deterministic actions m·tanh(μ) and q1 of them, for
 *       states given in the networks' input space (normalized), one per row
 *   eval <dir> [--episodes N] [--seed S]
 *       normalized return of the saved teacher's deterministic policy in its environment
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { ALL_ENV_NAMES, ENV_NAMES, ENV_SPECS, type EnvName } from "../envs/specs.ts";
import { datasetMeanScore, loadStage, locateDataset, type OfflineDataset } from "../stages/load.ts";
import {
  defaultTeacherConfig,
  evaluateTeacher,
  loadTeacherDir,
  saveTeacherDir,
  type TeacherArtifact,
  type TeacherConfig,
  teacherFromArtifact,
  teacherStage,
} from "../stages/teacher.ts";
import { checkTeacherFitsDataset } from "../stages/teacher/model.ts";
import { readTorchCheckpoint } from "../stages/teacher/torch_checkpoint.ts";
import { teacherFromCorl } from "../stages/teacher/corl_import.ts";
import { BACKEND_ENV, initBackend, requestedBackend } from "../numerics/backend.ts";
import { helpText, parseCommandLine } from "../core/cli.ts";
import { applyOverrides } from "../study/config.ts";
import { fail, type PipelineError, pipelineError, toPipelineError } from "../core/errors.ts";
import type { ProgressFactory } from "../core/progress.ts";
import { type Artifact, createRuntime, runStage, type Runtime } from "../core/runtime.ts";
import { exitWithError, freshOutput, isError, openRun, runCommand } from "./common.ts";
import { TOOL_VERSION } from "../core/version.ts";

const OPTIONS = {
  algorithm: { type: "string", help: "train: td3bc (default) or calql" },
  steps: { type: "string", help: "train: gradient steps (default 100000 for td3bc, 200 for calql)" },
  "eval-episodes": { type: "string", help: "train: evaluation episodes (default 10)" },
  seed: { type: "string", help: "train, eval: seed (default 0)" },
  set: { type: "string", multiple: true, help: "train: override a setting, e.g. --set td3bc.alpha=2.5" },
  force: { type: "boolean", help: "train: recompute the teacher even if cached" },
  out: { type: "string", help: "train, import: directory to save the teacher to (must not exist)" },
  dataset: { type: "string", help: "import: dataset whose state statistics normalize the inputs" },
  env: { type: "string", help: `import: environment, when no --dataset (${ENV_NAMES.join(", ")})` },
  states: { type: "string", help: 'act: JSON file with states ([[…], …] or {"states": …})' },
  episodes: { type: "string", help: "eval: episodes (default 10)" },
  backend: { type: "string", help: `tensor backend: wasm (default), cpu, tensorflow (or ${BACKEND_ENV})` },
  help: { type: "boolean", help: "show this help" },
} as const;
const USAGE = `deno task teacher train [dataset] [options]
       deno task teacher import <file.pt> --out <dir> [--dataset <name>] [--env <env>]
       deno task teacher act <dir> --states <file.json>
       deno task teacher eval <dir> [--episodes N] [--seed S]`;

type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

function whole(values: Values, name: string, fallback: number, min = 0): number {
  const raw = values[name] as string | undefined;
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v < min) {
    exitWithError(
      pipelineError("config", `--${name} ${raw} is not an integer ≥ ${min}`, `e.g. --${name} ${fallback}`),
    );
  }
  return v;
}

async function startBackend(values: Values): Promise<string> {
  const name = requestedBackend(values.backend as string | undefined, Deno.env.get(BACKEND_ENV));
  if (isError(name)) exitWithError(name);
  const info = await initBackend(name);
  if (isError(info)) exitWithError(info);
  return info.label;
}

/** Finds and loads a dataset through the cache (`data/cache`). */
async function loadDataset(rt: Runtime, name: string): Promise<Artifact<OfflineDataset>> {
  const located = await locateDataset(name, rt.progress);
  const result = await runStage(rt, loadStage, {
    file: located.file,
    sha256: located.sha256,
    env: located.env,
    ...(located.minari ? { minari: located.minari } : {}),
    minTransitions: 5_000,
  }, {})();
  if (result._tag === "Left") throw result.left;
  return result.right;
}

/**
 * The dataset and teacher config of `teacher train …` arguments (after `train`), or the first
 * mistake: what `train` runs, and how a saved teacher's recorded command is checked.
 */
export function trainRequest(
  args: readonly string[],
): { readonly dataset: string; readonly config: TeacherConfig } | PipelineError {
  const parsed = parseCommandLine([...args], OPTIONS, 1);
  if (isError(parsed)) return parsed;
  const values = parsed.values;
  const algorithm = (values.algorithm as string | undefined) ?? "td3bc";
  if (algorithm !== "td3bc" && algorithm !== "calql") {
    return pipelineError("config", `--algorithm ${algorithm}: choose td3bc or calql`);
  }
  const defaults = defaultTeacherConfig(algorithm);
  const numbers: Record<string, number> = {};
  for (
    const [name, fallback, min] of [
      ["steps", defaults.steps, 1],
      ["eval-episodes", defaults.evalEpisodes, 0],
      ["seed", defaults.seed, 0],
    ] as const
  ) {
    const raw = values[name] as string | undefined;
    const v = raw === undefined ? fallback : Number(raw);
    if (!Number.isInteger(v) || v < min) {
      return pipelineError(
        "config",
        `--${name} ${raw} is not an integer ≥ ${min}`,
        `e.g. --${name} ${fallback}`,
      );
    }
    numbers[name] = v;
  }
  const config = applyOverrides<TeacherConfig>({
    ...defaults,
    steps: numbers.steps,
    evalEpisodes: numbers["eval-episodes"],
    seed: numbers.seed,
  }, (values.set as string[] | undefined) ?? []);
  if (isError(config)) return config;
  return { dataset: parsed.positionals[0] ?? "embedded", config };
}

async function train(values: Values, positionals: string[], args: readonly string[]): Promise<void> {
  if (positionals.length > 1) {
    exitWithError(
      pipelineError("config", `train takes one dataset, got ${positionals.join(" ")}`, `usage: ${USAGE}`),
    );
  }
  const request = trainRequest(args);
  if (isError(request)) exitWithError(request);
  const { config, dataset } = request;
  const algorithm = config.algorithm;
  // Every setting is checked (with its valid range) before the dataset loads or a run directory opens.
  try {
    teacherStage.validate?.(config);
  } catch (e) {
    exitWithError(toPipelineError(e));
  }
  const out = values.out as string | undefined;
  if (out) await freshOutput(out);
  const backend = await startBackend(values);
  const run = openRun(`teacher-${algorithm}-${dataset.split("/").pop()}`);
  console.error(
    `teacher: ${algorithm} on ${dataset}, ${config.steps} steps, backend ${backend}; log ${run.dir}/metrics.jsonl`,
  );
  run.metrics.log({ event: "start", dataset, config, backend });
  const rt = createRuntime({
    cacheRoot: "data/cache",
    backend,
    force: values.force ? ["teacher"] : [],
    progress: run.progress,
    metrics: run.metrics,
    report: (l) => console.error(`  ${l}`),
  });
  try {
    const data = await loadDataset(rt, dataset);
    const result = await runStage(rt, teacherStage, config, { dataset: data })();
    if (result._tag === "Left") throw result.left;
    const teacher = result.right.value;
    if (out) {
      // What made it, so that the saved teacher can be retrained and checked (its score and
      // evaluation curve are in the teacher itself).
      await saveTeacherDir(out, teacher, {
        command: ["deno", "task", "teacher", "train", ...args],
        codeVersion: { tool: TOOL_VERSION, teacherStage: teacherStage.version },
        dataset: { name: dataset, file: data.value.file, sha256: data.value.sha256 },
        config: config as unknown as Record<string, unknown>,
        cacheKey: result.right.key,
        createdAt: new Date().toISOString(),
      });
    }
    const d = data.value;
    const summary = {
      dataset,
      env: d.env,
      algorithm,
      steps: teacher.training.steps,
      trainSeconds: +teacher.training.seconds.toFixed(1),
      curve: teacher.training.curve?.map((p) => [p.step, +p.normalizedScore.toFixed(2)]) ?? [],
      normalizedScore: teacher.evaluation ? +teacher.evaluation.meanNormalizedScore.toFixed(2) : null,
      evalEpisodes: teacher.evaluation?.episodes ?? 0,
      datasetMeanNormalizedReturn: +datasetMeanScore(d).toFixed(2),
      cacheKey: result.right.key,
      fromCache: result.right.fromCache,
      out: out ?? null,
      runDir: run.dir,
    };
    run.metrics.log({ event: "done", ...summary });
    console.log(JSON.stringify(summary));
  } catch (e) {
    run.metrics.log({ event: "failed", error: toPipelineError(e, "teacher") });
    exitWithError(toPipelineError(e, "teacher"));
  } finally {
    run.metrics.close();
  }
}

/** Converts a CORL checkpoint; with `dataset`, refuses a dimension mismatch before anything is written. */
export async function importTeacher(
  file: string,
  options: {
    readonly dataset?: string;
    readonly env?: EnvName;
    readonly rt?: Runtime;
    readonly progress?: ProgressFactory;
  },
): Promise<TeacherArtifact> {
  const bytes = await Deno.readFile(file).catch((e) =>
    fail("input", `cannot read ${file} (${(e as Error).message.split("\n")[0]})`)
  );
  const ckpt = await readTorchCheckpoint(bytes, file);
  const bare = teacherFromCorl(ckpt, { file, env: options.env ?? null });
  if (options.env) checkTeacherFitsDataset(bare, { ...ENV_SPECS[options.env], name: `of ${options.env}` });
  if (!options.dataset) return bare;
  const rt = options.rt ??
    createRuntime({ cacheRoot: "data/cache", backend: "none", progress: options.progress });
  const located = await locateDataset(options.dataset, rt.progress);
  // Known environment: refuse before reading the dataset at all.
  if (located.env) checkTeacherFitsDataset(bare, { ...ENV_SPECS[located.env], name: options.dataset });
  const data = (await loadDataset(rt, options.dataset)).value;
  checkTeacherFitsDataset(bare, { obsDim: data.obsDim, actDim: data.actDim, name: options.dataset });
  if (options.env && options.env !== data.env) {
    fail("config", `--env ${options.env} contradicts dataset ${options.dataset}, which is ${data.env}`);
  }
  return teacherFromCorl(ckpt, {
    file,
    env: data.env,
    stateMean: data.stateMean,
    stateStd: data.stateStd,
    maxAction: ENV_SPECS[data.env].actionHigh,
  });
}

async function importCommand(values: Values, positionals: string[]): Promise<void> {
  const [file] = positionals;
  if (!file || positionals.length > 1) {
    exitWithError(pipelineError("config", "import takes one checkpoint file", `usage: ${USAGE}`));
  }
  const out = values.out as string | undefined;
  if (!out) {
    exitWithError(pipelineError("config", "--out is required", "e.g. --out data/teachers/hopper-calql"));
  }
  const env = values.env as string | undefined;
  if (env !== undefined && !(ALL_ENV_NAMES as readonly string[]).includes(env)) {
    exitWithError(pipelineError("config", `--env ${env}: choose one of ${ALL_ENV_NAMES.join(", ")}`));
  }
  await freshOutput(out);
  try {
    const artifact = await importTeacher(file, {
      dataset: values.dataset as string | undefined,
      env: env as EnvName | undefined,
    });
    await saveTeacherDir(out, artifact);
    console.log(JSON.stringify({
      out,
      source: artifact.source,
      env: artifact.env,
      obsDim: artifact.obsDim,
      actDim: artifact.actDim,
      actorSizes: artifact.actor.net.sizes,
      criticSizes: artifact.critic.sizes,
      normalization: values.dataset ? `dataset ${values.dataset}` : "none (identity)",
    }));
  } catch (e) {
    exitWithError(toPipelineError(e, "teacher import"));
  }
}

/** Parses a states file: `[[…], …]` or `{"states": [[…], …]}`, every row `obsDim` finite numbers. */
export function parseStates(text: string, obsDim: number, file: string): Float32Array {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return fail("input", `${file} is not JSON (${(e as Error).message})`);
  }
  const rows = Array.isArray(json) ? json : (json as { states?: unknown })?.states;
  if (!Array.isArray(rows) || rows.length === 0) {
    fail("input", `${file} holds no states`, 'give [[s0…], [s1…]] or {"states": [[…]]}');
  }
  const out = new Float32Array(rows.length * obsDim);
  rows.forEach((row, i) => {
    if (
      !Array.isArray(row) || row.length !== obsDim ||
      row.some((v) => typeof v !== "number" || !Number.isFinite(v))
    ) {
      fail(
        "input",
        `${file}: state ${i} is not a list of ${obsDim} finite numbers`,
        `the teacher takes ${obsDim}-dimensional states`,
      );
    }
    out.set(row, i * obsDim);
  });
  return out;
}

async function act(values: Values, positionals: string[]): Promise<void> {
  const [dir] = positionals;
  const statesFile = values.states as string | undefined;
  if (!dir || !statesFile) {
    exitWithError(
      pipelineError("config", "act needs a teacher directory and --states <file.json>", `usage: ${USAGE}`),
    );
  }
  try {
    const artifact = await loadTeacherDir(dir);
    const states = parseStates(await Deno.readTextFile(statesFile), artifact.obsDim, statesFile);
    await startBackend(values);
    const teacher = teacherFromArtifact(artifact);
    const n = states.length / artifact.obsDim;
    const s = tf.tensor2d(states, [n, artifact.obsDim]);
    const a = teacher.act(s, "deterministic");
    const q = teacher.q(s, a);
    const actions = a.arraySync() as number[][];
    const qs = Array.from(q.dataSync());
    tf.dispose([s, a, q]);
    teacher.dispose();
    // JSON would print a NaN or an infinity as null: refuse instead of handing out non-actions.
    const bad = actions.findIndex((row, i) =>
      row.some((x) => !Number.isFinite(x)) || !Number.isFinite(qs[i])
    );
    if (bad >= 0) {
      fail(
        "numeric",
        `the teacher in ${dir} gives a non-finite action or q-value for state ${bad} (actions ${
          JSON.stringify(actions[bad].map(String))
        }, q ${qs[bad]})`,
        "its weights hold NaN or Inf, or the state is far outside the data: retrain or re-import the teacher",
      );
    }
    console.log(JSON.stringify({ actions, q: qs }));
  } catch (e) {
    exitWithError(toPipelineError(e, "teacher act"));
  }
}

async function evalCommand(values: Values, positionals: string[]): Promise<void> {
  const [dir] = positionals;
  if (!dir) exitWithError(pipelineError("config", "eval needs a teacher directory", `usage: ${USAGE}`));
  try {
    const artifact = await loadTeacherDir(dir);
    await startBackend(values);
    const episodes = whole(values, "episodes", 10, 1);
    const seed = whole(values, "seed", 0);
    const e = await evaluateTeacher(artifact, episodes, seed);
    console.log(JSON.stringify({
      dir,
      env: artifact.env,
      episodes,
      seed,
      normalizedScore: +e.meanNormalizedScore.toFixed(3),
      normalizedScores: Array.from(e.normalizedScores, (x) => +x.toFixed(3)),
      returns: Array.from(e.returns, (x) => +x.toFixed(2)),
    }));
  } catch (e) {
    exitWithError(toPipelineError(e, "teacher eval"));
  }
}

async function main(args: string[]): Promise<void> {
  const parsed = parseCommandLine(args, OPTIONS, 3);
  if (isError(parsed)) exitWithError(parsed);
  const [command, ...rest] = parsed.positionals;
  if (parsed.values.help || !command) {
    console.log(helpText(USAGE, OPTIONS));
    return;
  }
  switch (command) {
    case "train":
      return await train(parsed.values, rest, args.slice(args.indexOf("train") + 1));
    case "import":
      return await importCommand(parsed.values, rest);
    case "act":
      return await act(parsed.values, rest);
    case "eval":
      return await evalCommand(parsed.values, rest);
    default:
      exitWithError(
        pipelineError("config", `unknown command "${command}"`, "choose train, import, act or eval"),
      );
  }
}

if (import.meta.main) await runCommand(main);
