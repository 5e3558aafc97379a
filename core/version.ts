/** The toolkit's version (from deno.json), stamped into files and manifests. */
import denoJson from "../deno.json" with { type: "json" };

/** e.g. `obd 0.1.0`. */
export const TOOL_VERSION = `obd ${denoJson.version}`;
