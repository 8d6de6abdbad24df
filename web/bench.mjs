// The frame, side by side (issue 21, sections 1 and 4), measured in the browser for
// `cargo bench --bench posefix -- web` (driven by web/test/bench.mjs; web/bench.html loads it):
//   - the cost of one tiny node per backend: a chain of 300 `Add`s on [1,17,1,1] against a chain
//     of one, median of the frames;
//   - the decoder alone (the rewritten model cut at its heads, the heads fed as inputs, so that a
//     software GPU's slow convolutions do not hide it) against reading the heads back and
//     decoding them in JavaScript: single pose as tfjs posenet's decodeSinglePose (./decode.mjs,
//     a plain-JS port: tfjs's own runs on tf tensors), multi-pose with the published
//     @tensorflow-models/posenet 2.2.2 decodeMultiplePoses itself (its CommonJS files, unchanged,
//     from conformance/tfjs/node_modules, staged by web/build.sh as pkg/posenet).
// Both sides of a comparison run in one loop, interleaved, on the same heads. WebGL and wasm run
// in onnxruntime-web's `ort.all` bundle (as the page), WebGPU in its `ort.webgpu` bundle (as the
// page and the ort_web conformance leg), with no other execution provider.
import { decodeSinglePose } from "./decode.mjs";

const base = new URL("./pkg/ort/", import.meta.url).href;
const bundles = {};

async function ortFor(backend) {
  const file = backend === "webgpu" ? "ort.webgpu.min.mjs" : "ort.all.min.mjs";
  if (!bundles[file]) {
    const m = await import(`${base}${file}`);
    m.env.wasm.wasmPaths = base;
    m.env.wasm.numThreads = 1;
    m.env.wasm.proxy = false;
    m.env.logLevel = "error";
    if (file === "ort.all.min.mjs") m.env.webgl.contextId = "webgl2";
    bundles[file] = m;
  }
  return bundles[file];
}

async function session(backend, url) {
  const o = await ortFor(backend);
  const options = { executionProviders: [backend], graphOptimizationLevel: "all" };
  // Nothing quietly on the CPU: a node without a WebGPU kernel fails the session.
  if (backend === "webgpu") options.extra = { session: { disable_cpu_ep_fallback: "1" } };
  const s = await o.InferenceSession.create(url, options);
  s.Tensor = o.Tensor;
  return s;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

const bytesOf = (out) => Object.values(out).reduce((n, t) => n + t.data.byteLength, 0);

async function release(...sessions) {
  for (const s of sessions) await s.release();
}

/// Runs `frames` (after `warmup`) of each function in turn, interleaved, rotating which goes
/// first; each returns [ms, bytes]. Medians and the last frame's bytes.
async function interleaved(fns, frames, warmup) {
  for (let i = 0; i < warmup; i++) for (const f of fns) await f();
  const times = fns.map(() => []);
  const bytes = fns.map(() => 0);
  for (let i = 0; i < frames; i++) {
    for (let k = 0; k < fns.length; k++) {
      const j = (i + k) % fns.length;
      const [ms, b] = await fns[j]();
      times[j].push(ms);
      bytes[j] = b;
    }
  }
  return { ms: times.map(median), all: times, bytes };
}

// ---- per-node cost ----

/// `long` and `short`: chains of `longNodes` and `shortNodes` Adds on x [1,17,1,1].
async function chain(backend, { long, short, long_nodes: longNodes, short_nodes: shortNodes }, frames, warmup) {
  const sl = await session(backend, long);
  const ss = await session(backend, short);
  const frame = (s) => async () => {
    const x = new s.Tensor("float32", new Float32Array(17).fill(0.5), [1, 17, 1, 1]);
    const t0 = performance.now();
    const out = await s.run({ x });
    const ms = performance.now() - t0;
    return [ms, bytesOf(out)];
  };
  const r = await interleaved([frame(sl), frame(ss)], frames, warmup);
  await release(sl, ss);
  const [tl, ts] = r.ms;
  return { backend, frames, long_nodes: longNodes, short_nodes: shortNodes, long_ms: tl, short_ms: ts,
    per_node_us: ((tl - ts) / (longNodes - shortNodes)) * 1000, long_per_node_us: (tl / longNodes) * 1000,
    long_min_ms: Math.min(...r.all[0]), long_max_ms: Math.max(...r.all[0]) };
}

// ---- the decoder alone against read-back + JS ----

let posenetMultiPose = null;
const POSENET_FILES = ["keypoints.js", "multi_pose/decode_multiple_poses.js", "multi_pose/build_part_with_score_queue.js",
  "multi_pose/decode_pose.js", "multi_pose/max_heap.js", "multi_pose/util.js"];

/// @tensorflow-models/posenet 2.2.2's decodeMultiplePoses, from its published CommonJS files
/// (plain JS: it reads the heads through `shape` and `get(y, x, c)`, as tfjs TensorBuffers).
async function decodeMultiplePoses() {
  if (posenetMultiPose) return posenetMultiPose;
  const root = new URL("./pkg/posenet/", import.meta.url).href;
  const sources = {};
  for (const f of POSENET_FILES) {
    const r = await fetch(root + f);
    if (!r.ok) throw new Error(`${root}${f}: ${r.status} (web/build.sh stages pkg/posenet from conformance/tfjs)`);
    sources[f] = await r.text();
  }
  const cache = {};
  const requireFrom = (from) => (spec) => {
    const parts = from.split("/").slice(0, -1);
    for (const p of spec.split("/")) {
      if (p === "..") parts.pop();
      else if (p !== ".") parts.push(p);
    }
    const file = `${parts.join("/")}.js`;
    if (!(file in sources)) throw new Error(`posenet: ${file} is not staged`);
    if (!cache[file]) {
      const module = { exports: {} };
      cache[file] = module;
      new Function("exports", "require", "module", sources[file])(module.exports, requireFrom(file), module);
    }
    return cache[file].exports;
  };
  posenetMultiPose = requireFrom("index.js")("./multi_pose/decode_multiple_poses").decodeMultiplePoses;
  return posenetMultiPose;
}

/// A CHW head read as tfjs reads an HWC TensorBuffer.
function hwc(data, c, h, w) {
  return { shape: [h, w, c], get: (y, x, k) => data[(k * h + y) * w + x] };
}

async function heads(list) {
  const out = {};
  for (const h of list) {
    const buf = await (await fetch(h.url)).arrayBuffer();
    out[h.name] = { data: new Float32Array(buf), dims: h.dims };
  }
  return out;
}

/// One comparison: `c.decoder` (the cut decoder: heads in, its outputs out) against
/// `c.read_back` (the heads in, each through one Mul by an input `one` so that it is a tensor of
/// the backend's, and out) plus the JS decode.
async function decoder(backend, c, frames, warmup) {
  const h = await heads(c.heads);
  const sd = await session(backend, c.decoder);
  const sr = await session(backend, c.read_back);
  const feed = (s, names, extra) => {
    const f = {};
    for (const n of names) f[n] = new s.Tensor("float32", h[n].data, h[n].dims);
    return Object.assign(f, extra ? extra(s) : {});
  };
  const names = c.heads.map((x) => x.name);
  const feedsD = feed(sd, names);
  const feedsR = feed(sr, names, (s) => ({ one: new s.Tensor("float32", new Float32Array([1]), [1]) }));
  const [hmName, offName, fwdName, bwdName] = c.read_back_outputs;
  const multi = c.kind === "multi";
  const decodeMulti = multi ? await decodeMultiplePoses() : null;
  let lastD, lastJs;
  const frameD = async () => {
    const t0 = performance.now();
    const out = await sd.run(feedsD);
    const ms = performance.now() - t0;
    lastD = out;
    return [ms, bytesOf(out)];
  };
  const frameR = async () => {
    const t0 = performance.now();
    const out = await sr.run(feedsR);
    const hm = out[hmName];
    if (multi) {
      const [, ch, hh, ww] = hm.dims;
      const logits = hm.data;
      const scores = new Float32Array(logits.length);
      for (let i = 0; i < logits.length; i++) scores[i] = 1 / (1 + Math.exp(-logits[i]));
      const buf = (t) => hwc(t.data, t.dims[1], hh, ww);
      lastJs = decodeMulti(hwc(scores, ch, hh, ww), buf(out[offName]), buf(out[fwdName]), buf(out[bwdName]),
        c.stride, c.max_poses, c.score_threshold, c.nms_radius);
    } else {
      lastJs = decodeSinglePose(hm.data, out[offName].data, hm.dims, "NCHW", c.stride, true);
    }
    const ms = performance.now() - t0;
    return [ms, bytesOf(out)];
  };
  const r = await interleaved([frameD, frameR], frames, warmup);
  await release(sd, sr);
  // The two decodes of the same heads, side by side: the largest position difference.
  let dpos = 0, poses = null;
  if (multi) {
    const p = lastD[c.outputs[0]].data, sc = lastD[c.outputs[1]].data;
    const found = Array.from(sc).filter((s) => s >= 0).length;
    poses = { graph: found, js: lastJs.length };
    for (let i = 0; i < Math.min(found, lastJs.length); i++) {
      lastJs[i].keypoints.forEach((k, j) => {
        const at = (i * 17 + j) * 3;
        dpos = Math.max(dpos, Math.abs(k.position.x - p[at]), Math.abs(k.position.y - p[at + 1]));
      });
    }
  } else {
    const kp = lastD[c.outputs[0]].data;
    lastJs.forEach(([x, y], k) => { dpos = Math.max(dpos, Math.abs(x - kp[3 * k]), Math.abs(y - kp[3 * k + 1])); });
  }
  return { backend, size: c.size, kind: c.kind, max_poses: c.max_poses ?? null, decoder_nodes: c.decoder_nodes, frames,
    decoder_ms: r.ms[0], read_back_js_ms: r.ms[1], decoder_bytes: r.bytes[0], read_back_bytes: r.bytes[1],
    max_dpos: dpos, poses };
}

async function adapter() {
  if (!navigator.gpu) return null;
  const a = await navigator.gpu.requestAdapter();
  return a ? { vendor: a.info?.vendor, architecture: a.info?.architecture } : null;
}

window.posefixBench = {
  ready: true,
  async info() {
    const o = await ortFor("wasm");
    return { ort: o.env.versions.web || o.env.versions.common, webgpu: await adapter(), userAgent: navigator.userAgent };
  },
  chain,
  decoder,
};
