/**
 * The Slurm client against a real single-machine Slurm. The module brings it up with
 * tests/setup-slurm.sh (idempotent, about a second when it is already running); when that fails
 * the Slurm tests fail on CI (CI=true) and are skipped with the script's reason elsewhere.
 */
import assert from "node:assert/strict";
import {
  arrayTaskStates,
  formatIndexList,
  parseIndexList,
  parseSacct,
  parseScontrol,
  renderArrayScript,
  slurmAvailable,
  submitArray,
  taskLogPaths,
  type TaskStatus,
  waitForArray,
} from "../grid/slurm.ts";
import { assertFails, REPO_ROOT } from "./helpers.ts";

const setup = await new Deno.Command("sh", {
  args: [`${REPO_ROOT}tests/setup-slurm.sh`],
  stdout: "piped",
  stderr: "piped",
}).output();
const setupFailure = setup.success
  ? ""
  : new TextDecoder().decode(setup.stderr).trim().split("\n").pop() ?? "";
const available = setup.success ? await slurmAvailable() : { ok: false as const, reason: setupFailure };
const onCI = Deno.env.get("CI") === "true";
const skip = !available.ok && !onCI;
if (skip) {
  console.log(`slurm_test: skipping the Slurm tests: ${"reason" in available ? available.reason : ""}`);
}

const summary = (tasks: ReadonlyMap<number, TaskStatus>) =>
  Object.fromEntries([...tasks.values()].map((t) => [t.index, `${t.state}:${t.exitCode}`]));

Deno.test("slurm: Slurm can be brought up (tests/setup-slurm.sh)", { ignore: skip }, () => {
  assert.ok(available.ok, `Slurm is not usable on CI: ${"reason" in available ? available.reason : ""}`);
});

Deno.test(
  "slurm: an array where task 1 fails, then index 1 alone resubmitted",
  { ignore: skip },
  async () => {
    assert.ok(available.ok, "Slurm is not usable (see the test above)");
    const dir = await Deno.makeTempDir({ dir: "/tmp", prefix: "obd-slurm-test-" });
    try {
      const render = (array: string | number[], command: string) =>
        renderArrayScript({
          jobName: "obd-test",
          array,
          logDir: dir,
          chdir: dir,
          time: 5,
          cpusPerTask: 1,
          command,
        });
      const failing = `${dir}/failing.sh`;
      await Deno.writeTextFile(
        failing,
        render("0-2", 'echo "task $SLURM_ARRAY_TASK_ID"\nif [ "$SLURM_ARRAY_TASK_ID" = 1 ]; then exit 3; fi'),
      );
      const jobId = await submitArray(failing);
      const seen: Record<string, number>[] = [];
      const first = await waitForArray(jobId, {
        pollMs: 300,
        timeoutMs: 120_000,
        onProgress: (c) => seen.push(c),
      });
      assert.deepEqual(summary(first), { 0: "COMPLETED:0", 1: "FAILED:3", 2: "COMPLETED:0" });
      assert.ok(
        seen.length > 0 && Object.values(seen.at(-1)!).reduce((a, b) => a + b) === 3,
        JSON.stringify(seen),
      );
      const log = taskLogPaths(dir, "obd-test", jobId, 1);
      assert.equal((await Deno.readTextFile(log.output)).trim(), "task 1");
      await Deno.stat(log.error);
      assert.deepEqual(
        summary(await arrayTaskStates(jobId)),
        summary(first),
        "states stay queryable after the end",
      );

      const failed = [...first.values()].filter((t) => t.state !== "COMPLETED").map((t) => t.index);
      const fixed = `${dir}/fixed.sh`;
      await Deno.writeTextFile(fixed, render(failed, 'echo "task $SLURM_ARRAY_TASK_ID again"'));
      const retryId = await submitArray(fixed);
      const retry = await waitForArray(retryId, { pollMs: 300, timeoutMs: 120_000 });
      assert.deepEqual(summary(retry), { 1: "COMPLETED:0" });
      assert.equal(
        (await Deno.readTextFile(taskLogPaths(dir, "obd-test", retryId, 1).output)).trim(),
        "task 1 again",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("slurm: sbatch refusing a script is a typed config error", { ignore: skip }, async () => {
  await assertFails(submitArray("/tmp/obd-no-such-script.sh"), "config", [
    "sbatch refused",
    "/tmp/obd-no-such-script.sh",
  ]);
  await assertFails(arrayTaskStates("999999999"), "backend", ["999999999"]);
});

Deno.test("slurm: index lists", () => {
  assert.deepEqual(parseIndexList("0-3,7"), [0, 1, 2, 3, 7]);
  assert.deepEqual(parseIndexList("[4-9%2]"), [4, 5, 6, 7, 8, 9]);
  assert.deepEqual(parseIndexList("1-9:4"), [1, 5, 9]);
  assert.equal(formatIndexList([8, 0, 1, 2, 5, 7]), "0-2,5,7-8");
  assert.equal(formatIndexList([3]), "3");
  assert.throws(() => parseIndexList("1-"), /not a Slurm array index list/);
  assert.throws(() => formatIndexList([]), /empty set/);
});

Deno.test("slurm: the rendered script", () => {
  const text = renderArrayScript({
    jobName: "grid",
    array: [2, 5],
    command: "deno task pipeline --set seed=$SLURM_ARRAY_TASK_ID",
    logDir: "/runs/logs/",
    partition: "gpu",
    gpus: 1,
    time: "2:00:00",
    cpusPerTask: 4,
    chdir: "/work",
    extra: ["--mem=8G"],
  });
  assert.equal(
    text,
    [
      "#!/bin/sh",
      "#SBATCH --job-name=grid",
      "#SBATCH --array=2,5",
      "#SBATCH --output=/runs/logs/grid_%A_%a.out",
      "#SBATCH --error=/runs/logs/grid_%A_%a.err",
      "#SBATCH --partition=gpu",
      "#SBATCH --gres=gpu:1",
      "#SBATCH --time=2:00:00",
      "#SBATCH --cpus-per-task=4",
      "#SBATCH --chdir=/work",
      "#SBATCH --mem=8G",
      "",
      "deno task pipeline --set seed=$SLURM_ARRAY_TASK_ID",
      "",
    ].join("\n"),
  );
  assert.match(
    renderArrayScript({
      jobName: "g",
      array: "0-1",
      command: "x",
      logDir: "/l",
      gpus: 2,
      gpuOption: "gpus-per-task",
    }),
    /--gpus-per-task=2\n/,
  );
  assert.throws(
    () => renderArrayScript({ jobName: "a b", array: "0", command: "x", logDir: "/l" }),
    /one word/,
  );
  assert.deepEqual(taskLogPaths("/runs/logs/", "grid", "41", 5), {
    output: "/runs/logs/grid_41_5.out",
    error: "/runs/logs/grid_41_5.err",
  });
});

Deno.test("slurm: sacct and scontrol output parsing", () => {
  const sacct = [
    "41_0|COMPLETED|0:0",
    "41_0.batch|COMPLETED|0:0",
    "41_1|FAILED|3:0",
    "41_2|CANCELLED by 0|0:15",
    "41_3|RUNNING|0:0",
    "41_[4-6%2]|PENDING|0:0",
    "42_0|FAILED|1:0",
  ].join("\n");
  assert.deepEqual(summary(parseSacct("41", sacct)), {
    0: "COMPLETED:0",
    1: "FAILED:3",
    2: "CANCELLED:0",
    3: "RUNNING:0",
    4: "PENDING:0",
    5: "PENDING:0",
    6: "PENDING:0",
  });
  assert.equal(parseSacct("41", sacct).get(2)?.signal, 15);
  const scontrol = [
    "JobId=43 ArrayJobId=41 ArrayTaskId=1 JobName=g JobState=TIMEOUT Reason=TimeLimit ExitCode=0:15",
    "JobId=41 ArrayJobId=41 ArrayTaskId=2,4-5%2 JobName=g JobState=PENDING Reason=Resources ExitCode=0:0",
    "JobId=50 JobName=other JobState=RUNNING ExitCode=0:0",
  ].join("\n");
  assert.deepEqual([...parseScontrol("41", scontrol).keys()], [1, 2, 4, 5], "sorted by index");
  assert.deepEqual(summary(parseScontrol("41", scontrol)), {
    1: "TIMEOUT:0",
    2: "PENDING:0",
    4: "PENDING:0",
    5: "PENDING:0",
  });
});
