// Bundles each widget's front end into livetrain_widgets/static/ (a build artifact, gitignored).
// `node build.mjs` builds once (minified); `node build.mjs --watch` rebuilds on change, which
// anywidget hot-reloads in a running notebook when ANYWIDGET_HMR=1.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const watch = process.argv.includes("--watch");

const options = {
  entryPoints: {
    canvas: path.join(here, "src/canvas/index.ts"),
    panel: path.join(here, "src/panel/index.ts"),
    plots: path.join(here, "src/plots/index.ts"),
    stream: path.join(here, "src/stream/index.ts"),
  },
  outdir: path.join(here, "../livetrain_widgets/static"),
  bundle: true,
  format: "esm",
  target: ["es2020"],
  minify: !watch,
  sourcemap: watch ? "inline" : false,
  // CSS imported by an entry lands beside it (canvas.css, ...), loaded through the widget's _css.
  loader: { ".css": "css" },
  logLevel: "info",
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
