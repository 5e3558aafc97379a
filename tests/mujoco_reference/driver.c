/*
 * Reference driver for tests/mujoco_reference_test.ts: runs one of the project's MJCF models in the
 * MuJoCo that this file is compiled against (Debian's libmujoco-dev, MuJoCo 2.2.2, whose contact
 * rules are those of the engines D4RL was collected with) and prints the raw state, from which the
 * test computes observations, rewards and termination with the project's spec functions.
 *
 *   driver MODEL.xml masses
 *     prints "version V", then one line "body NAME MASS" per body.
 *   driver MODEL.xml run FRAME_SKIP STEPS WARMSTART < input
 *     input: nq qpos values, nv qvel values, then STEPS * nu actions (whitespace separated).
 *     Sets the state (mj_forward, as Gym's set_state), then per step: ctrl = action, FRAME_SKIP
 *     mj_step calls, one line "qpos... qvel..." (%.17g). WARMSTART 0 disables the solver's warm
 *     start (mjDSBL_WARMSTART); 1 keeps the model's options.
 * Errors go to stderr as one line, exit status 1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <mujoco/mujoco.h>

static void fail(const char* what, const char* detail) {
  fprintf(stderr, "driver: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
  exit(1);
}

static double readNumber(void) {
  double v;
  if (scanf("%lf", &v) != 1) fail("input ended early or holds a non-number", NULL);
  return v;
}

int main(int argc, char** argv) {
  if (argc < 3) fail("usage: driver MODEL.xml masses | run FRAME_SKIP STEPS WARMSTART", NULL);
  char error[1000] = "";
  mjModel* m = mj_loadXML(argv[1], NULL, error, sizeof(error));
  if (!m) fail("MuJoCo rejected the model", error);

  if (strcmp(argv[2], "masses") == 0) {
    printf("version %d\n", mj_version());
    for (int b = 0; b < m->nbody; b++) {
      const char* name = mj_id2name(m, mjOBJ_BODY, b);
      printf("body %s %.17g\n", name ? name : "world", m->body_mass[b]);
    }
    mj_deleteModel(m);
    return 0;
  }
  if (strcmp(argv[2], "run") != 0 || argc != 6) fail("usage: driver MODEL.xml run FRAME_SKIP STEPS WARMSTART", NULL);
  int frameSkip = atoi(argv[3]);
  int steps = atoi(argv[4]);
  if (atoi(argv[5]) == 0) m->opt.disableflags |= mjDSBL_WARMSTART;

  mjData* d = mj_makeData(m);
  if (!d) fail("mj_makeData failed", NULL);
  for (int i = 0; i < m->nq; i++) d->qpos[i] = readNumber();
  for (int i = 0; i < m->nv; i++) d->qvel[i] = readNumber();
  mj_forward(m, d);
  for (int t = 0; t < steps; t++) {
    for (int j = 0; j < m->nu; j++) d->ctrl[j] = readNumber();
    for (int k = 0; k < frameSkip; k++) mj_step(m, d);
    for (int i = 0; i < m->nq; i++) printf("%.17g ", d->qpos[i]);
    for (int i = 0; i < m->nv; i++) printf(i + 1 < m->nv ? "%.17g " : "%.17g\n", d->qvel[i]);
  }
  mj_deleteData(d);
  mj_deleteModel(m);
  return 0;
}
