// Runs tests/onnx_models (argv[2]) into a folder (argv[3]), then runs every
// model it wrote in ONNX Runtime (the onnxruntime-node package, found through
// NODE_PATH) on the inputs of its .json and compares each output with the one
// tapegrad's forward gave: |ort - tapegrad| <= tol max(1, |tapegrad|), NaN
// matching NaN and infinities equal. Prints one line per failure, the largest
// error seen, and 'N passed, M failed'; exits 1 on any failure or no model.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node');

const [gen, dir] = process.argv.slice(2);
mkdirSync(dir, { recursive: true });
for (const f of readdirSync(dir)) if (/\.(onnx|json)$/.test(f)) rmSync(join(dir, f));
execFileSync(gen, [dir], { stdio: 'inherit' });

const number = (v) => (v === 'nan' ? NaN : v === 'inf' ? Infinity : v === '-inf' ? -Infinity : v);
const typed = {
  float32: (d) => Float32Array.from(d.map(number)),
  float64: (d) => Float64Array.from(d.map(number)),
  int64: (d) => BigInt64Array.from(d.map((v) => BigInt(v))),
};

let passed = 0, failed = 0, worst = 0, worstAt = '';
for (const file of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
  const name = file.slice(0, -5);
  const c = JSON.parse(readFileSync(join(dir, file), 'utf8'));
  try {
    const session = await ort.InferenceSession.create(join(dir, name + '.onnx'));
    const feeds = {};
    for (const t of c.inputs) feeds[t.name] = new ort.Tensor(t.dtype, typed[t.dtype](t.data), t.shape);
    const results = await session.run(feeds);
    const problems = [];
    for (const want of c.outputs) {
      const got = results[want.name];
      if (!got) { problems.push(`no output '${want.name}'`); continue; }
      if (got.dims.join('x') !== want.shape.join('x')) {
        problems.push(`${want.name}: shape [${got.dims}] instead of [${want.shape}]`);
        continue;
      }
      want.data.forEach((w, k) => {
        const a = Number(got.data[k]), b = number(w);
        if (Number.isNaN(a) && Number.isNaN(b)) return;
        if (a === b) return;
        const err = Math.abs(a - b) / Math.max(1, Math.abs(b));
        if (err > worst) { worst = err; worstAt = `${name} ${want.name}[${k}]`; }
        if (!(err <= c.tol)) problems.push(`${want.name}[${k}]: ${a} instead of ${b}`);
      });
    }
    if (problems.length) throw new Error(problems.slice(0, 3).join('; '));
    passed++;
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`);
    failed++;
  }
}
console.log(`largest relative error ${worst.toExponential(2)} (${worstAt})`);
console.log(`onnxruntime-node ${ort.env.versions?.node ?? ''}: ${passed} passed, ${failed} failed`);
process.exit(failed || !passed ? 1 : 0);
