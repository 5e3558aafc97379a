/**
 * `deno task collect <env> <kind> --out data/<file>.hdf5 [--transitions N] [--seed S] …`
 *
 * Trains ARS behaviour policies in our MuJoCo environments and writes a D4RL-layout dataset (see
 * `datasets/collect.ts`). Training checkpoints to `<out>.ars-checkpoint/` every 50 iterations, so
 * an interrupted run started again with the same arguments resumes.
 * @module
 */

import { dirname } from "node:path";
import { ENV_NAMES, ENV_SPECS, type EnvName } from "../envs/specs.ts";
import {
  collect,
  type CollectConfig,
  DATASET_KINDS,
  type DatasetKind,
  defaultCollectConfig,
} from "../datasets/collect.ts";
import { writeD4rlFile } from "../datasets/hdf5.ts";
import { helpText, parseCommandLine } from "../core/cli.ts";
import { pipelineError, toPipelineError } from "../core/errors.ts";
import { TOOL_VERSION } from "../core/version.ts";
import { exitWithError, freshOutput, isError, openRun, runCommand } from "./common.ts";

const OPTIONS = {
  out: { type: "string", help: "output HDF5 file (under data/; required)" },
  transitions: { type: "string", help: "transitions to write (medium-replay: a cap; default 1000000)" },
  seed: { type: "string", help: "seed of training and rollouts (default 0)" },
  "max-iterations": { type: "string", help: "ARS iterations at most (default 3000)" },
  "medium-score": { type: "string", help: "normalized score that makes a policy 'medium' (default 33.3)" },
  "expert-score": { type: "string", help: "normalized score at which expert training stops (default 90)" },
  "replay-episodes": {
    type: "string",
    help: "medium-replay: exploration episodes recorded per ARS iteration (default 8)",
  },
  "exploration-noise": {
    type: "string",
    help: "medium-replay: σ of their Gaussian action noise (default 0.3)",
  },
  help: { type: "boolean", help: "show this help" },
} as const;
const USAGE = `deno task collect <${ENV_NAMES.join("|")}> <${
  DATASET_KINDS.join("|")
}> --out data/<file>.hdf5 [options]`;

function positiveNumber(name: string, raw: string | undefined, fallback: number, integer: boolean): number {
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < 0) {
    exitWithError(
      pipelineError(
        "config",
        `--${name} ${raw} is not a ${integer ? "non-negative integer" : "non-negative number"}`,
        `e.g. --${name} ${fallback}`,
      ),
    );
  }
  return v;
}

async function main(args: string[]): Promise<void> {
  const parsed = parseCommandLine(args, OPTIONS, 2);
  if (isError(parsed)) exitWithError(parsed);
  if (parsed.values.help) {
    console.log(helpText(USAGE, OPTIONS));
    return;
  }
  const [env, kind] = parsed.positionals;
  if (!(ENV_NAMES as readonly string[]).includes(env)) {
    exitWithError(pipelineError("config", `unknown environment "${env ?? ""}"`, `usage: ${USAGE}`));
  }
  if (!DATASET_KINDS.includes(kind as DatasetKind)) {
    exitWithError(
      pipelineError(
        "config",
        `unknown dataset kind "${kind ?? ""}"`,
        `choose one of ${DATASET_KINDS.join(", ")}`,
      ),
    );
  }
  const out = parsed.values.out as string | undefined;
  if (!out || !out.endsWith(".hdf5")) {
    exitWithError(
      pipelineError(
        "config",
        out ? `--out ${out} does not end in .hdf5` : "--out is required",
        "e.g. --out data/collected/hopper_medium_replay.hdf5",
      ),
    );
  }
  await freshOutput(out);
  // The file is written after minutes of training: make its directory now, so a path that cannot
  // be written fails before any work.
  await Deno.mkdir(dirname(out), { recursive: true }).catch((e) => exitWithError(toPipelineError(e)));
  const defaults = defaultCollectConfig(env as EnvName, kind as DatasetKind);
  const v = parsed.values as Record<string, string | undefined>;
  const config: CollectConfig = {
    ...defaults,
    transitions: positiveNumber("transitions", v.transitions, defaults.transitions, true),
    seed: positiveNumber("seed", v.seed, defaults.seed, true),
    maxIterations: positiveNumber("max-iterations", v["max-iterations"], defaults.maxIterations, true),
    mediumScore: positiveNumber("medium-score", v["medium-score"], defaults.mediumScore, false),
    expertScore: positiveNumber("expert-score", v["expert-score"], defaults.expertScore, false),
    replayEpisodes: positiveNumber("replay-episodes", v["replay-episodes"], defaults.replayEpisodes, true),
    explorationNoise: positiveNumber(
      "exploration-noise",
      v["exploration-noise"],
      defaults.explorationNoise,
      false,
    ),
  };
  const run = openRun(`collect-${env}-${kind}`);
  console.error(
    `collect: ${env} ${kind} → ${out} (seed ${config.seed}, up to ${config.transitions} transitions); log ${run.dir}/metrics.jsonl`,
  );
  try {
    const result = await collect(config, {
      progress: run.progress,
      log: (r) => run.metrics.log(r),
      checkpointDir: `${out}.ars-checkpoint`,
    });
    const t = result.transitions;
    const { obsDim, actDim } = ENV_SPECS[config.env];
    const policyFacts = (label: string, p: typeof result.medium) =>
      p
        ? {
          [`${label}_return`]: p.evalReturn,
          [`${label}_score`]: p.evalScore,
          [`${label}_iteration`]: p.iteration,
        }
        : {};
    await writeD4rlFile(out, {
      n: t.size,
      obsDim,
      actDim,
      observations: t.observations,
      actions: t.actions,
      rewards: t.rewards,
      terminals: t.terminals,
      timeouts: t.timeouts,
      nextObservations: t.nextObservations,
    }, {
      env: config.env,
      gym_id: ENV_SPECS[config.env].gymId,
      kind: config.kind,
      seed: config.seed,
      behaviour_policy: "linear, trained with ARS (Mania et al. 2018) in obd's MuJoCo environments",
      note: "D4RL-style dataset (same layout and semantics), not D4RL",
      tool_version: TOOL_VERSION,
      command: `deno task collect ${args.join(" ")}`,
      training_iterations: result.trainingIterations,
      training_steps: result.trainingSteps,
      action_noise: config.actionNoise,
      ...(config.kind === "medium-replay"
        ? { replay_episodes: config.replayEpisodes, exploration_noise: config.explorationNoise }
        : {}),
      ...policyFacts("medium", result.medium),
      ...policyFacts("expert", result.expert),
    });
    const summary = {
      out,
      env: config.env,
      kind: config.kind,
      transitions: t.size,
      seconds: +result.seconds.toFixed(1),
      trainingIterations: result.trainingIterations,
      trainingSteps: result.trainingSteps,
      mediumScore: result.medium?.evalScore,
      expertScore: result.expert?.evalScore,
    };
    run.metrics.log({ event: "collected", ...summary });
    console.log(JSON.stringify(summary));
  } catch (e) {
    exitWithError(toPipelineError(e, "collect"));
  } finally {
    run.metrics.close();
  }
}

if (import.meta.main) await runCommand(main);
