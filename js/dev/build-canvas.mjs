// Builds only the canvas bundle (unminified, with a source map) for the dev harness, so the canvas can
// be iterated on while the other widgets' sources are mid-change. The real build is `npm run build`.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const outdir = process.argv[2] ?? path.join(here, "../../livetrain_widgets/static");
await esbuild.build({
  entryPoints: { canvas: path.join(here, "../src/canvas/index.ts") },
  outdir,
  bundle: true,
  format: "esm",
  target: ["es2020"],
  sourcemap: "inline",
  loader: { ".css": "css" },
  logLevel: "warning",
});
console.log(`canvas bundle -> ${outdir}`);
