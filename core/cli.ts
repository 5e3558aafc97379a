/**
 * Command-line parsing shared by every task, on `node:util`'s `parseArgs` (JSR's `@std/cli` cannot
 * be reached from our machines). Unknown options and malformed values become one-line config
 * errors that list what is accepted.
 * @module
 */

import { parseArgs } from "node:util";
import { type PipelineError, pipelineError } from "./errors.ts";

/** Declaration of one option. */
export interface OptionSpec {
  readonly type: "string" | "boolean";
  readonly multiple?: boolean;
  readonly short?: string;
  /** One line for `--help`. */
  readonly help: string;
}

/** Parsed command line. */
export interface ParsedArgs {
  readonly values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  readonly positionals: string[];
}

/** Parses `args` strictly against `options`; a `PipelineError` value on any mistake. */
export function parseCommandLine(
  args: readonly string[],
  options: Readonly<Record<string, OptionSpec>>,
  maxPositionals: number,
): ParsedArgs | PipelineError {
  const valid = Object.keys(options).map((o) => `--${o}`).join(", ");
  try {
    const parsed = parseArgs({
      args: [...args],
      options: Object.fromEntries(
        Object.entries(options).map(([name, o]) => [name, {
          type: o.type,
          ...(o.multiple ? { multiple: true } : {}),
          ...(o.short ? { short: o.short } : {}),
        }]),
      ),
      strict: true,
      allowPositionals: true,
    });
    if (parsed.positionals.length > maxPositionals) {
      return pipelineError(
        "config",
        `unexpected argument "${parsed.positionals[maxPositionals]}"`,
        `this command takes at most ${maxPositionals} positional argument(s); options are ${valid}`,
      );
    }
    return { values: parsed.values as ParsedArgs["values"], positionals: parsed.positionals };
  } catch (e) {
    const message = (e as Error).message.split("\n")[0].replace(/\.\s*To specify a positional.*$/, "")
      .replace(/\.$/, "");
    return pipelineError(
      "config",
      message.charAt(0).toLowerCase() + message.slice(1),
      `valid options: ${valid}`,
    );
  }
}

/** The `--help` text for a command. */
export function helpText(usage: string, options: Readonly<Record<string, OptionSpec>>): string {
  const lines = Object.entries(options).map(([name, o]) => {
    const flag = `--${name}${o.type === "string" ? " <value>" : ""}${o.multiple ? " (repeatable)" : ""}`;
    return `  ${flag.padEnd(34)} ${o.help}`;
  });
  return `usage: ${usage}\n\noptions:\n${lines.join("\n")}\n`;
}
