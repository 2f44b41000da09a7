// Builds the Compose and HPC Jobs pages into airflow_provider_hpcai/plugins/static/ (committed, shipped
// in the wheel: installing the provider needs no Node.js). Reproducible: pinned versions
// (package-lock.json), no timestamps, no source maps. `node build.mjs --check` rebuilds into memory
// and fails when the committed files differ. ui-build.json records the inputs' SHA-256, which a
// Python unit test compares without Node.js.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "airflow_provider_hpcai", "plugins", "static");
const check = process.argv.includes("--check");
const sha = (data) => createHash("sha256").update(data).digest("hex");

const inputs = ["package.json", "package-lock.json", "build.mjs", ...readdirSync(join(here, "src")).sort().map((f) => `src/${f}`)];
const files = {};
for (const entry of ["compose", "monitor"]) {
  const result = await build({
    entryPoints: [join(here, "src", `${entry}.jsx`)],
    bundle: true,
    minify: true,
    format: "iife",
    target: ["es2020"],
    jsx: "automatic",
    define: { "process.env.NODE_ENV": '"production"' },
    legalComments: "none",
    write: false,
    outdir: out,
    logLevel: "warning",
  });
  for (const file of result.outputFiles) files[relative(out, file.path)] = file.contents;
}
const css = readFileSync(join(here, "node_modules", "@xyflow", "react", "dist", "style.css"));
files["xyflow.css"] = css;
const manifest = {
  note: "built by ui/build.mjs from these inputs; rebuild with `cd ui && npm ci && npm run build`",
  inputs: Object.fromEntries(inputs.map((f) => [f, sha(readFileSync(join(here, f)))])),
  outputs: Object.fromEntries(Object.keys(files).sort().map((f) => [f, sha(files[f])])),
};
files["ui-build.json"] = Buffer.from(JSON.stringify(manifest, null, 2) + "\n");
let stale = [];
for (const [name, data] of Object.entries(files)) {
  const path = join(out, name);
  if (check) {
    let old = null;
    try { old = readFileSync(path); } catch { old = null; }
    if (!old || !Buffer.from(data).equals(old)) stale.push(name);
  } else {
    writeFileSync(path, data);
  }
}
if (check && stale.length) {
  console.error(`stale built assets: ${stale.join(", ")}; run: cd ui && npm ci && npm run build`);
  process.exit(1);
}
console.log(check ? "built assets are up to date" : `wrote ${Object.keys(files).join(", ")} to ${out}`);
