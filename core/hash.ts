/**
 * Canonical JSON and SHA-256: the two ingredients of every cache key.
 * @module
 */

/**
 * Serializes `value` with object keys sorted at every depth, so that two configs that are equal
 * as values hash equally whatever order their keys were written in. Rejects what JSON cannot
 * represent faithfully (undefined, functions, NaN, ±Infinity) instead of silently dropping it.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(canonicalize(value, "$"));
}

function canonicalize(value: unknown, path: string): unknown {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") {
    if (!Number.isFinite(value)) throw new TypeError(`${path} is ${value}, which has no canonical JSON form`);
    return value;
  }
  if (Array.isArray(value)) return value.map((v, i) => canonicalize(v, `${path}[${i}]`));
  if (typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value as object).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v === undefined) continue; // an absent optional field and an undefined one are the same config
      out[key] = canonicalize(v, `${path}.${key}`);
    }
    return out;
  }
  throw new TypeError(`${path} has type ${typeof value}, which cannot be part of a config`);
}

/** Hex SHA-256 of bytes or of a UTF-8 string. */
export async function sha256Hex(data: Uint8Array | string): Promise<string> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
