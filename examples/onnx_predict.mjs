// Runs a model exported by `tools/train --onnx PATH` in ONNX Runtime for Node
// on the Fashion-MNIST test set and prints its accuracy:
//
//     tools/onnxruntime-install
//     NODE_PATH=tools/onnxruntime/node_modules node examples/onnx_predict.mjs fashion_mnist.onnx
//
// The images are read from the IDX files tools/train uses, scaled to [0, 1]
// as the trainer scales them, and fed in batches of 500 to the input
// 'pixels' [batch, 784]; the output 'logits' [batch, 10] gives the classes.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { gunzipSync } from 'node:zlib';

const require = createRequire(import.meta.url);
const ort = require('onnxruntime-node');

const [model, data = '/usr/share/datasets/fashion-mnist'] = process.argv.slice(2);
if (!model) {
  console.error('usage: node onnx_predict.mjs MODEL.onnx [DATA_DIR]');
  process.exit(2);
}
const idx = (name) => gunzipSync(readFileSync(`${data}/${name}`));
const images = idx('t10k-images-idx3-ubyte.gz').subarray(16);
const labels = idx('t10k-labels-idx1-ubyte.gz').subarray(8);

const session = await ort.InferenceSession.create(model);
const n = labels.length, batch = 500;
let correct = 0;
for (let at = 0; at < n; at += batch) {
  const rows = Math.min(batch, n - at);
  const x = new Float32Array(rows * 784);
  for (let k = 0; k < x.length; k++) x[k] = images[at * 784 + k] / 255;
  const { logits } = await session.run({ pixels: new ort.Tensor('float32', x, [rows, 784]) });
  for (let r = 0; r < rows; r++) {
    const row = logits.data.subarray(r * 10, r * 10 + 10);
    if (row.indexOf(Math.max(...row)) === labels[at + r]) correct++;
  }
}
console.log(`${model}: ${correct} of ${n} test images right (accuracy ${(correct / n).toFixed(4)})`);
