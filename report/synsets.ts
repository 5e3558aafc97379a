/**
 * Every distilled set of a study as a file in the run directory, `synsets/<dataset>-<method>-seed<k>.hdf5`
 * (`stages/synset_file.ts` gives the layout), with what made it: method, objective value, seed, the
 * full config, the teacher's and the dataset's sha256, and the code version.
 * @module
 */

import { join } from "node:path";
import { canonicalJson, sha256Hex } from "../core/hash.ts";
import { TOOL_VERSION } from "../core/version.ts";
import type { Artifact } from "../core/runtime.ts";
import { distillStage } from "../stages/distill.ts";
import { synsetFileName, writeSynsetFile } from "../stages/synset_file.ts";
import type { TeacherArtifact } from "../stages/teacher/model.ts";
import { distillConfig, type PipelineConfig, type StudyResult } from "../study/obd.ts";

/**
 * The teacher's digest and what it is of: an imported teacher's file (a checkpoint's sha256, a
 * saved directory's manifest sha256), else the sha256 of its cache entry's file digests.
 */
export async function teacherDigest(
  teacher: Artifact<TeacherArtifact>,
): Promise<{ sha256: string; of: string }> {
  const config = teacher.manifest.config as { import?: string; sha256?: string };
  if (typeof config?.import === "string" && typeof config.sha256 === "string") {
    return {
      sha256: config.sha256,
      of: config.import === "corl-checkpoint" ? "the checkpoint file" : "the teacher directory's SHA256SUMS",
    };
  }
  return {
    sha256: await sha256Hex(canonicalJson(teacher.manifest.files)),
    of: `the teacher stage's cache entry ${teacher.key} (canonical JSON of its files' sha256)`,
  };
}

/** Writes the study's distilled sets into `<runDir>/synsets/`; returns the paths written. */
export async function writeStudySynsets(
  runDir: string,
  study: StudyResult,
  config: PipelineConfig,
): Promise<string[]> {
  const written: string[] = [];
  const teacher = study.teacher ? await teacherDigest(study.teacher) : undefined;
  for (const run of study.runs) {
    if (!run.distilled || run.method === "random") continue;
    const set = run.distilled.value;
    const path = join(runDir, "synsets", synsetFileName(study.datasetName, run.method, run.seed));
    await Deno.mkdir(join(runDir, "synsets"), { recursive: true });
    const last = set.curve[set.curve.length - 1];
    const usesTeacher = run.distilled.manifest.inputs.teacher !== undefined;
    await writeSynsetFile(path, set, {
      method: run.method,
      objective: set.objective,
      objective_value: last ? last.outerLoss : Number.NaN,
      outer_steps: set.curve.length,
      seed: run.seed,
      config: canonicalJson({ ...config, seeds: [run.seed] }),
      distill_config: canonicalJson(distillConfig(config, set.objective, run.seed)),
      dataset: study.datasetName,
      dataset_file: study.dataset.value.file,
      dataset_sha256: study.dataset.value.sha256,
      teacher_sha256: usesTeacher && teacher ? teacher.sha256 : "none",
      teacher_sha256_of: usesTeacher && teacher ? teacher.of : "no teacher (the objective uses none)",
      teacher_source: usesTeacher && study.teacher ? study.teacher.value.source : "none",
      code_version: `${TOOL_VERSION}, distill stage ${distillStage.version}`,
      distill_cache_key: run.distilled.key,
    });
    written.push(path);
  }
  return written;
}
