// Bundles the Layer Dynamics tab into the Python package: src/index.js (and the CSS it imports,
// uPlot's included) -> ../tb_layerdyn/plugin/static/index.js + index.css, one ES module that
// exports render(). setup.py runs this at build time; the output is never committed.
//
// Usage: node build.mjs [--watch]

import { build, context } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));

/** @type {import('esbuild').BuildOptions} */
const options = {
  entryPoints: [join(here, 'src', 'index.js')],
  outfile: join(here, '..', 'tb_layerdyn', 'plugin', 'static', 'index.js'),
  bundle: true,
  format: 'esm',
  // TensorBoard's supported browsers; keeps the output free of transforms nobody needs.
  target: ['chrome100', 'firefox100', 'safari15'],
  minify: true,
  legalComments: 'eof',
  sourcemap: false,
  logLevel: 'info',
};

if (process.argv.includes('--watch')) {
  const ctx = await context(options);
  await ctx.watch();
} else {
  await build(options);
}
