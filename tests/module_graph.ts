/** Reading a module's relative imports, for the layer and stage-version tests. */

/**
 * Relative specifiers a module imports (`import … from`, `export … from`, `import(…)`) and the worker
 * scripts it starts (`new URL(…, import.meta.url)`). A worker runs in a module graph of its own, so
 * its script is held to the layers but not counted in circles (a pool and its worker name each other).
 */
export function relativeImports(source: string): { imports: string[]; workers: string[] } {
  const collect = (
    patterns: RegExp[],
  ) => [...new Set(patterns.flatMap((p) => [...source.matchAll(p)].map((m) => m[1])))];
  return {
    imports: collect([
      /(?:import|export)\s[^'"]*?from\s*["'](\.{1,2}\/[^"']+)["']/g,
      /import\s*\(\s*["'](\.{1,2}\/[^"']+)["']\s*\)/g,
    ]),
    workers: collect([/new URL\(\s*["'](\.{1,2}\/[^"']+\.ts)["']\s*,\s*import\.meta\.url\s*\)/g]),
  };
}

/** A module's imports and worker scripts, as repository-relative paths. */
export interface ModuleEdges {
  readonly imports: readonly string[];
  readonly workers: readonly string[];
}
