/**
 * The OBD pipeline as one fp-ts composition: load → teacher → density → distill → evaluate →
 * summarize. Each arrow is `runStage`, so every stage is cached by its content hash and the first
 * failure short-circuits the rest. Stages not yet implemented in this version are absent, not faked.
 * @module
 */

import { pipe } from "fp-ts/function.js";
import * as TE from "fp-ts/TaskEither.js";
import { type LocatedDataset, locateDataset, loadStage, type OfflineDataset } from "../stages/load.ts";
import { type PipelineError, toPipelineError } from "./errors.ts";
import { type Artifact, runStage, type Runtime } from "./runtime.ts";

/** The whole configuration of a run, one section per stage. */
export interface PipelineConfig {
  readonly load: { readonly minTransitions: number };
}

/** Named configurations: `quick` for a laptop demo, `paper` for the published settings. */
export const PRESETS: Readonly<Record<string, PipelineConfig>> = {
  quick: { load: { minTransitions: 5_000 } },
  paper: { load: { minTransitions: 5_000 } },
};

/** Names of the stages this version runs, in order (valid values of `--force`). */
export const STAGE_NAMES = ["load"] as const;

/** Everything a run produced. */
export interface PipelineResult {
  readonly located: LocatedDataset;
  readonly dataset: Artifact<OfflineDataset>;
}

/** Finds the dataset and runs the stages on it. */
export function runPipeline(rt: Runtime, datasetName: string, config: PipelineConfig): TE.TaskEither<PipelineError, PipelineResult> {
  return pipe(
    TE.tryCatch(() => locateDataset(datasetName, rt.progress), (e) => ({ ...toPipelineError(e), stage: "load" })),
    TE.chain((located) =>
      pipe(
        runStage(rt, loadStage, { file: located.file, sha256: located.sha256, env: located.env, minTransitions: config.load.minTransitions }, {}),
        TE.map((dataset) => ({ located, dataset })),
      )
    ),
  );
}
