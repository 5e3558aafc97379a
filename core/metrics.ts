/**
 * The JSON-lines metrics log of a run: one object per line, each stamped with the time since the
 * run started, so a run can be plotted or compared with `jq`/arquero without parsing text logs.
 * @module
 */

/** Appends records to a run's metrics log. */
export interface MetricsLog {
  /** Appends one record (a flat or nested JSON-able object). */
  log(record: Readonly<Record<string, unknown>>): void;
  /** Closes the underlying file, if any. */
  close(): void;
}

/** A log that appends to `path` (created with its directory). */
export function fileMetricsLog(path: string): MetricsLog {
  const dir = path.slice(0, path.lastIndexOf("/"));
  if (dir) Deno.mkdirSync(dir, { recursive: true });
  const file = Deno.openSync(path, { append: true, create: true });
  const start = performance.now();
  const encoder = new TextEncoder();
  return {
    log(record) {
      const line = JSON.stringify({ t: +((performance.now() - start) / 1000).toFixed(3), ...record });
      file.writeSync(encoder.encode(line + "\n"));
    },
    close() {
      file.close();
    },
  };
}

/** A log kept in memory (library use and tests). */
export function memoryMetricsLog(): MetricsLog & { readonly records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  return { records, log: (r) => void records.push({ ...r }), close() {} };
}
