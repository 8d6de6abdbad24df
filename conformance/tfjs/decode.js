// Runs the published @tensorflow-models/posenet 2.2.2 decodeMultiplePoses on dumped heads and
// writes its poses as JSON, for tests/it/tfjs.rs to compare with src/reference/multi_pose.rs.
//
// usage: node decode.js HEADS_DIR OUT_JSON
// HEADS_DIR/manifest.json: {"channels": [17, 34, 32, 32], "stride": S, "max_poses": [N, ...],
//   "score_threshold": T, "nms_radius": R, "photos": [{"name", "height", "width"}]}; and per photo
//   NAME.bin: the four heads of one batch item, CHW float32 little-endian, concatenated.
// The heatmap logits go through tf.sigmoid on the pure-JS CPU backend, as posenet's
// BaseModel.predict does (base_model.js:59); the heads become HWC TensorBuffers, as
// posenet_model.js's toTensorBuffers3D makes them.
'use strict';
const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const posenet = require('@tensorflow-models/posenet');

function chwToHwc(data, c, h, w) {
  const out = new Float32Array(c * h * w);
  for (let ch = 0; ch < c; ch++)
    for (let y = 0; y < h; y++)
      for (let x = 0; x < w; x++) out[(y * w + x) * c + ch] = data[(ch * h + y) * w + x];
  return out;
}

async function main() {
  const [headsDir, outJson] = process.argv.slice(2);
  if (!headsDir || !outJson) throw new Error('usage: node decode.js HEADS_DIR OUT_JSON');
  await tf.setBackend('cpu');
  await tf.ready();
  const m = JSON.parse(fs.readFileSync(path.join(headsDir, 'manifest.json'), 'utf8'));
  const results = {
    posenet: require('@tensorflow-models/posenet/package.json').version,
    tfjs_core: tf.version_core,
    photos: [],
  };
  for (const { name, height: h, width: w } of m.photos) {
    const raw = fs.readFileSync(path.join(headsDir, name + '.bin'));
    const all = new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4);
    let at = 0;
    const [hm, off, fwd, bwd] = m.channels.map((c) => {
      const part = all.subarray(at, at + c * h * w);
      at += c * h * w;
      return chwToHwc(part, c, h, w);
    });
    if (at !== all.length) throw new Error(`${name}: ${all.length} values, expected ${at}`);
    const [c0, c1, c2, c3] = m.channels;
    const scoresT = tf.sigmoid(tf.tensor3d(hm, [h, w, c0], 'float32'));
    const scores = await scoresT.buffer();
    scoresT.dispose();
    const buffers = [[off, c1], [fwd, c2], [bwd, c3]].map(([d, c]) => tf.buffer([h, w, c], 'float32', d));
    const runs = {};
    for (const n of m.max_poses) {
      const poses = posenet.decodeMultiplePoses(
        scores, ...buffers, m.stride, n, m.score_threshold, m.nms_radius);
      runs[n] = poses.map((p) => ({ score: p.score, keypoints: p.keypoints.map((k) => [k.position.x, k.position.y, k.score]) }));
    }
    results.photos.push({ name, runs });
  }
  fs.writeFileSync(outJson, JSON.stringify(results));
}
main().catch((e) => { console.error(e.stack || String(e)); process.exit(1); });
