/**
 * The embedded dataset's shipped teacher (`data/embedded/teacher/`, the `quick` preset's default
 * teacher through `--teacher auto`): it loads (its checksum manifest verified), fits the embedded
 * dataset, was trained by this teacher stage's code version on this dataset's content for at least
 * 100k steps with its evaluation curve recorded, and its recorded command would retrain it — the
 * command parses to the recorded config, and run through the real `teacher` task for a few steps it
 * starts the same training (same cache key, bit-identical weights) as the recorded config does.
 *
 * The same checks run on a tiny teacher trained here by `deno task teacher train --out`, so they are
 * exercised whether or not the shipped one is present; the shipped one's test FAILS when the
 * directory is missing (it is not skipped: the demo's default teacher must not vanish unnoticed).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { initBackend } from "../numerics/backend.ts";
import { createRuntime, runStage } from "../core/runtime.ts";
import {
  checkImportedTeacher,
  loadTeacherDir,
  readTeacherProvenance,
  type TeacherConfig,
  teacherStage,
} from "../stages/teacher.ts";
import { trainRequest } from "../commands/teacher.ts";
import { PRESETS, resolveTeacherSource, SHIPPED_TEACHER_DIR } from "../study/obd.ts";
import { loadEmbedded, REPO_ROOT, repoScratchDir, runUnderTask } from "./helpers.ts";

await initBackend("wasm");

const DIR = await repoScratchDir("shipped-teacher");

/** `args` without the options `names` (and their values), in both `--x v` and `--x=v` forms. */
function withoutOptions(args: readonly string[], names: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].replace(/^--/, "").split("=")[0];
    if (args[i].startsWith("--") && names.includes(name)) {
      if (!args[i].includes("=")) i++;
      continue;
    }
    out.push(args[i]);
  }
  return out;
}

const RETRAIN_STEPS = 5;

/** Every check of a saved teacher of the embedded dataset (`dir` relative to the repository). */
async function checkRetrainable(dir: string, minSteps: number): Promise<void> {
  const teacher = await loadTeacherDir(join(REPO_ROOT, dir));
  const provenance = await readTeacherProvenance(join(REPO_ROOT, dir));
  assert.ok(
    provenance,
    `${dir}/teacher.json records no provenance: save it with \`deno task teacher train --out\``,
  );
  const cache = await Deno.makeTempDir();
  const rt = createRuntime({ cacheRoot: cache, backend: "wasm" });
  const data = await loadEmbedded(rt, 5_000); // the teacher task's load settings
  const d = data.value;
  checkImportedTeacher(teacher, dir, { name: "embedded", env: d.env, obsDim: d.obsDim, actDim: d.actDim });
  assert.equal(provenance.dataset.name, "embedded");
  assert.equal(provenance.dataset.sha256, d.sha256, "trained on the embedded dataset as it is now");
  assert.equal(
    provenance.codeVersion.teacherStage,
    teacherStage.version,
    `trained by teacher stage version ${provenance.codeVersion.teacherStage}, the code is at ${teacherStage.version}: retrain it with its recorded command`,
  );
  // The recorded command is the recorded config.
  const [deno, task, name, sub, ...args] = provenance.command;
  assert.deepEqual([deno, task, name, sub], ["deno", "task", "teacher", "train"]);
  const request = trainRequest(args);
  assert.ok(!("kind" in request), JSON.stringify(request));
  assert.equal(request.dataset, "embedded");
  assert.deepEqual(request.config, provenance.config);
  const config = provenance.config as unknown as TeacherConfig;
  // Its score and evaluation curve.
  assert.equal(teacher.training.steps, config.steps);
  assert.ok(
    teacher.training.steps >= minSteps,
    `${teacher.training.steps} steps, expected at least ${minSteps}`,
  );
  assert.ok(teacher.evaluation && teacher.evaluation.episodes === config.evalEpisodes, "evaluated");
  if (config.evalEvery > 0) {
    const curve = teacher.training.curve ?? [];
    const expected = Array.from(
      { length: Math.floor((config.steps - 1) / config.evalEvery) },
      (_, i) => (i + 1) * config.evalEvery,
    );
    assert.deepEqual(
      curve.map((p) => p.step),
      [...expected, config.steps],
      "an evaluation every evalEvery steps",
    );
    assert.equal(curve[curve.length - 1].normalizedScore, teacher.evaluation!.meanNormalizedScore);
  }
  // Rerun for a few steps through the real task: the same training as the recorded config starts.
  const out = `${DIR}/retrain-${crypto.randomUUID().slice(0, 6)}`;
  const rerun = await runUnderTask("teacher", "commands/teacher.ts", [
    "train",
    ...withoutOptions(args, ["steps", "eval-episodes", "out", "force"]),
    "--steps",
    String(RETRAIN_STEPS),
    "--eval-episodes",
    "0",
    "--out",
    out,
  ]);
  assert.equal(rerun.code, 0, rerun.stderr);
  const short = await runStage(rt, teacherStage, { ...config, steps: RETRAIN_STEPS, evalEpisodes: 0 }, {
    dataset: data,
  })();
  assert.equal(short._tag, "Right");
  if (short._tag !== "Right") return;
  assert.equal(JSON.parse(rerun.stdout.trim().split("\n").pop()!).cacheKey, short.right.key);
  const retrained = await loadTeacherDir(join(REPO_ROOT, out));
  const fresh = short.right.value;
  for (const [a, b] of [[retrained.actor.net, fresh.actor.net], [retrained.critic, fresh.critic]] as const) {
    a.weights.forEach((w, i) => assert.deepEqual(w, b.weights[i]));
    a.biases.forEach((w, i) => assert.deepEqual(w, b.biases[i]));
  }
  assert.equal(retrained.training.steps, RETRAIN_STEPS);
  await Deno.remove(cache, { recursive: true });
}

Deno.test("a teacher saved by `deno task teacher train --out` passes the shipped-teacher checks", async () => {
  const out = `${DIR}/tiny`;
  const r = await runUnderTask("teacher", "commands/teacher.ts", [
    "train",
    "--steps",
    "20",
    "--eval-episodes",
    "1",
    "--seed",
    "3",
    "--set",
    "evalEvery=8",
    "--out",
    out,
  ]);
  assert.equal(r.code, 0, r.stderr);
  await checkRetrainable(out, 1);
  const provenance = (await readTeacherProvenance(join(REPO_ROOT, out)))!;
  assert.equal((provenance.config as { seed: number }).seed, 3);
  assert.match(provenance.codeVersion.tool, /^obd \d/);
});

Deno.test("the embedded dataset's shipped teacher loads, fits the dataset and its recorded command retrains it", async () => {
  const present = await Deno.stat(join(REPO_ROOT, SHIPPED_TEACHER_DIR)).then(
    (s) => s.isDirectory,
    () => false,
  );
  assert.ok(
    present,
    `${SHIPPED_TEACHER_DIR}/ is missing: the quick preset's default teacher. Train it with \`deno task teacher train embedded --out ${SHIPPED_TEACHER_DIR}\` (TD3+BC, 100k steps, an evaluation every 10k) and commit it`,
  );
  await checkRetrainable(SHIPPED_TEACHER_DIR, 100_000);
  // It is the quick preset's teacher of the embedded dataset, and of no other dataset.
  assert.equal(PRESETS.quick.teacher.source, "auto");
  assert.equal(await resolveTeacherSource("auto", "embedded"), SHIPPED_TEACHER_DIR);
  assert.equal(await resolveTeacherSource("auto", "hopper-m-r"), "train");
  assert.equal(await resolveTeacherSource("train", "embedded"), "train");
});
