/**
 * `deno task bench <name> [options]`: runs bench/<name>.ts, which prints its figures as JSON lines.
 * @module
 */

const BENCHES = ["env", "distill", "teacher", "evaluate", "density", "protocol"] as const;

const [name] = Deno.args;
if (!name || !(BENCHES as readonly string[]).includes(name)) {
  console.error(`error[config]: unknown benchmark "${name ?? ""}" — choose one of ${BENCHES.join(", ")}`);
  Deno.exit(2);
}
await import(`./${name}.ts`);
