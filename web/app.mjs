// The page: onnx-posefix (web/wasm, through posefix.mjs) rewrites the model in memory;
// onnxruntime-web runs the result on a photo and the pose is drawn as `--draw` draws it; the
// saving is measured against the original model read back whole and decoded in JS.
// Everything a test needs is on window.posefixPage (web/test/run.mjs drives it).
import { Posefix } from "./posefix.mjs";
import { decodeSinglePose } from "./decode.mjs";

const ORT_VERSION = "1.30.0";
const BUNDLED_MODEL = "pkg/posenet-mobilenet075-257.onnx";
const BUNDLED_PHOTO = "pkg/astronaut.png";

const $ = (id) => document.getElementById(id);
const page = (window.posefixPage = { ready: false, errors: [] });
// `ort`: onnxruntime-web's `ort.all` bundle (WebGL and wasm); `gpuOrt`: its `ort.webgpu` bundle,
// loaded at the first WebGPU session. Their "webgpu" differ: `ort.webgpu` runs onnxruntime's C++
// WebGPU provider (what conformance/legs/ort_web checks), `ort.all` the older JavaScript kernels.
let ort, gpuOrt, ortBase, posefix, about;

// --draw's look comes from the library (about.style: onnx_posefix::render::DRAW_STYLE).

async function loadOrt() {
  // The pinned onnxruntime-web staged by web/build.sh (conformance/legs/ort_web's node_modules);
  // without it, the same version from jsDelivr.
  const bases = [new URL("./pkg/ort/", import.meta.url).href,
    `https://cdn.jsdelivr.net/npm/onnxruntime-web@${ORT_VERSION}/dist/`];
  let last;
  for (const base of bases) {
    try {
      ort = await import(`${base}ort.all.min.mjs`);
      ort.env.wasm.wasmPaths = base;
      ortBase = base;
      break;
    } catch (e) {
      last = e;
    }
  }
  if (!ort) throw new Error(`cannot load onnxruntime-web: ${last}`);
  // One thread: a plain static server sends no cross-origin isolation headers.
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.logLevel = "error";
}

/// The bundle that runs `backend`.
async function ortFor(backend) {
  if (backend !== "webgpu") return ort;
  if (!gpuOrt) {
    const m = await import(`${ortBase}ort.webgpu.min.mjs`);
    m.env.wasm.wasmPaths = ortBase;
    m.env.wasm.numThreads = 1;
    m.env.wasm.proxy = false;
    m.env.logLevel = "error";
    gpuOrt = m;
  }
  return gpuOrt;
}

/// Why this browser has no WebGPU, or null when it has an adapter.
async function noWebGpu() {
  if (!navigator.gpu) return "no navigator.gpu";
  try {
    return (await navigator.gpu.requestAdapter()) ? null : "no WebGPU adapter";
  } catch (e) {
    return String(e && e.message ? e.message : e);
  }
}

const state = (page.state = {
  model: null, modelName: null, inspection: null,
  rewritten: null, // {bytes, name, summary, provenance, inspection, args}
  photo: null, photoName: "astronaut.png",
});

// ---- options -> the CLI's flags ----
function cliArgs() {
  const form = new FormData($("options"));
  const args = [];
  for (const [k, v] of form) {
    if (k === "prune") args.push("--prune");
    else if (k === "target" && v === "portable") continue; // the CLI's default
    else if (String(v).trim() !== "") args.push(`--${k}`, String(v).trim());
  }
  return args;
}

function outName(name) {
  return `${name.replace(/\.onnx$/i, "")}-posefix.onnx`;
}

function showCommand() {
  const quote = (a) => (/^[\w.,:/=+-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`);
  const name = state.modelName || "MODEL.onnx";
  $("cmdline").textContent = ["onnx-posefix", name, outName(name), ...cliArgs()].map(quote).join(" ");
}

// ---- model ----
async function setModel(bytes, name) {
  state.model = bytes;
  state.modelName = name;
  state.rewritten = null;
  $("modelName").textContent = name;
  $("modelSize").textContent = `(${bytes.length.toLocaleString()} bytes)`;
  $("download").hidden = true;
  $("result").innerHTML = "";
  showCommand();
  const reply = await posefix.inspect(bytes, name, cliArgs().filter((a, i, all) => a === "--input-shape" || all[i - 1] === "--input-shape"));
  state.inspection = reply;
  $("inspect").textContent = reply.ok ? reply.text : reply.error;
  return reply;
}

function line(cls, text) {
  const div = document.createElement("div");
  div.className = cls;
  div.textContent = text;
  return div;
}

async function rewrite() {
  const args = cliArgs();
  const out = outName(state.modelName);
  const reply = await posefix.rewrite(state.model, state.modelName, out, args);
  const result = $("result");
  result.innerHTML = "";
  if (!reply.ok) {
    state.rewritten = null;
    $("download").hidden = true;
    result.append(line("error", reply.error));
    return reply;
  }
  result.append(line("summary", reply.summary));
  for (const note of reply.notes) result.append(line("summary", note));
  const provenance = Object.fromEntries(reply.provenance);
  const inspection = await posefix.inspect(reply.model, out, []);
  state.rewritten = { bytes: reply.model, name: out, summary: reply.summary, provenance, args,
    inspection: inspection.inspection, grid: reply.grid };
  const a = $("download");
  if (a.href) URL.revokeObjectURL(a.href);
  a.href = URL.createObjectURL(new Blob([reply.model], { type: "application/octet-stream" }));
  a.download = out;
  a.textContent = `Download ${out} (${reply.model.length.toLocaleString()} bytes)`;
  a.hidden = false;
  return reply;
}

// ---- input tensors ----
function imageInput(inspection) {
  const input = inspection.inputs.find((i) => i.name === inspection.heads.image) || inspection.inputs[0];
  const dims = input.shape.map((d) => (typeof d === "number" ? d : 1));
  const nchw = dims[1] === 1 || dims[1] === 3;
  const [c, h, w] = nchw ? [dims[1], dims[2], dims[3]] : [dims[3], dims[1], dims[2]];
  return { name: input.name, dims, nchw, c, h, w };
}

/// The photo stretched to w x h (as verify resizes), as 0..255 RGB.
function pixelsOf(photo, w, h) {
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(photo, 0, 0, w, h);
  return ctx.getImageData(0, 0, w, h).data;
}

const NORMALIZE = {
  mobilenet: (v) => v / 127.5 - 1,
  resnet: (v, ch) => v + [-123.15, -115.9, -103.06][ch],
  unit: (v) => v / 255,
  byte: (v) => v,
};

function tensorOf(photo, input, how) {
  const px = pixelsOf(photo, input.w, input.h);
  const data = new Float32Array(input.c * input.h * input.w);
  const f = NORMALIZE[how];
  for (let y = 0; y < input.h; y++) {
    for (let x = 0; x < input.w; x++) {
      const p = (y * input.w + x) * 4;
      for (let ch = 0; ch < input.c; ch++) {
        const v = input.c === 1 ? (px[p] * 0.299 + px[p + 1] * 0.587 + px[p + 2] * 0.114) : px[p + ch];
        const i = input.nchw ? (ch * input.h + y) * input.w + x : (y * input.w + x) * input.c + ch;
        data[i] = f(Math.fround(v), ch);
      }
    }
  }
  return new ort.Tensor("float32", data, input.dims);
}

/// How each model's input is made: the rewritten one takes pixels when --pixels was given.
function feedsFor(provenance) {
  const pixels = provenance["posefix.input.pixels"];
  const pre = provenance["posefix.input.preprocess"] || "mobilenet";
  return { original: pre, rewritten: pixels || pre };
}

// ---- running ----
/// A session on exactly `backend` (no other execution provider), with the tensor class of its
/// bundle as `session.Tensor`. On WebGPU, onnxruntime would quietly run the nodes its WebGPU
/// provider has no kernel for on the CPU; `session.disable_cpu_ep_fallback` makes such a model
/// fail instead, so that the page falls back as a whole and says why.
async function sessionOn(bytes, backend) {
  const o = await ortFor(backend);
  const options = { executionProviders: [backend], graphOptimizationLevel: "all" };
  if (backend === "webgpu") options.extra = { session: { disable_cpu_ep_fallback: "1" } };
  const session = await o.InferenceSession.create(bytes, options);
  session.Tensor = o.Tensor;
  return session;
}

/// `feeds` as tensors of `session`'s bundle.
function ownFeeds(session, feeds) {
  return Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, new session.Tensor(t.type, t.data, t.dims)]));
}

/// The backends tried in order, from the one chosen: WebGPU, then WebGL, then wasm.
const FALLBACK = ["webgpu", "webgl", "wasm"];
const LABEL = { webgpu: "WebGPU", webgl: "WebGL", wasm: "wasm" };

/// A session on `backend` that ran once on `feeds`, else on the next backend of FALLBACK (with
/// why each failed).
async function sessionWithFallback(bytes, backend, feeds) {
  const failed = [];
  for (const b of FALLBACK.slice(FALLBACK.indexOf(backend))) {
    if (b === "wasm") {
      const fallback = failed.length ? `${failed.join("; ")}; ran on wasm` : null;
      return { session: await sessionOn(bytes, "wasm"), backend: "wasm", fallback };
    }
    try {
      if (b === "webgpu") {
        const why = await noWebGpu();
        if (why) throw new Error(why);
      }
      const s = await sessionOn(bytes, b);
      try {
        await s.run(ownFeeds(s, feeds));
      } catch (e) {
        await s.release();
        throw e;
      }
      return { session: s, backend: b, fallback: failed.length ? `${failed.join("; ")}; ran on ${LABEL[b]}` : null };
    } catch (e) {
      failed.push(`${LABEL[b]} failed (${String(e && e.message ? e.message : e)})`);
    }
  }
  throw new Error("unreachable");
}

function b64(bytes) {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

const bytesOf = (data) => new Uint8Array(data.buffer, data.byteOffset, data.byteLength);

/// IEEE half-precision bits to a number.
function halfToFloat(h) {
  const e = (h >> 10) & 0x1f, m = h & 0x3ff, sign = h & 0x8000 ? -1 : 1;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

/// A tensor's values as numbers: float32 as they are, float16 (`--output-type float16`, which
/// ort-web hands over as raw 16-bit words unless the browser has Float16Array) converted.
function valuesOf(t) {
  if (t.type === "float16" && t.data instanceof Uint16Array) return Array.from(t.data, halfToFloat);
  return t.data;
}

function triples(data, offset, n) {
  const out = [];
  for (let k = 0; k < n; k++) out.push([data[offset + 3 * k], data[offset + 3 * k + 1], data[offset + 3 * k + 2]]);
  return out;
}

async function run() {
  const r = state.rewritten;
  if (!r) throw new Error("rewrite first");
  const input = imageInput(r.inspection);
  const how = feedsFor(r.provenance).rewritten;
  const tensor = tensorOf(state.photo, input, how);
  const feeds = { [input.name]: tensor };
  $("runStatus").textContent = "running…";
  const { session, backend, fallback } = await sessionWithFallback(r.bytes, $("backend").value, feeds);
  const own = ownFeeds(session, feeds);
  const t0 = performance.now();
  const outputs = await session.run(own);
  const ms = performance.now() - t0;
  await session.release();
  const kpName = r.provenance["posefix.output"];
  const n = about.keypoints.length;
  const keypoints = triples(valuesOf(outputs[kpName]), 0, n);
  let poses = null;
  const posesName = r.provenance["posefix.poses.output"];
  if (posesName) {
    const p = valuesOf(outputs[posesName]);
    const scores = Array.from(valuesOf(outputs[r.provenance["posefix.poses.scores_output"]]));
    poses = scores.map((score, i) => ({ score, keypoints: triples(p, i * n * 3, n) }));
  }
  const exported = {};
  for (const [name, t] of Object.entries(outputs)) exported[name] = { dims: t.dims, b64: b64(bytesOf(t.data)) };
  draw(keypoints, poses, input);
  listKeypoints(keypoints, poses);
  $("runStatus").textContent = `${backend}${fallback ? ` (${fallback})` : ""}, ${ms.toFixed(1)} ms`;
  page.result = {
    backend, fallback, pixels: how, model: r.name, photo: state.photoName,
    photoSize: [state.photo.width, state.photo.height],
    input: { name: input.name, dims: input.dims, b64: b64(bytesOf(tensor.data)) },
    outputs: exported, keypoints, poses,
    settings: { stride: Number(r.provenance["posefix.stride"]), layout: r.provenance["posefix.layout"],
      scores: r.provenance["posefix.scores"], heatmaps: r.provenance["posefix.heatmaps"],
      offsets: r.provenance["posefix.offsets"], grid: r.grid,
      output_type: r.provenance["posefix.output_type"] || "float32",
      multi: posesName ? { max_poses: Number(r.provenance["posefix.poses.max"]),
        score_threshold: Number(r.provenance["posefix.poses.score_threshold"]),
        nms_radius: Number(r.provenance["posefix.poses.nms_radius"]),
        fwd: r.provenance["posefix.poses.displacement_fwd"], bwd: r.provenance["posefix.poses.displacement_bwd"] } : null },
  };
  return page.result;
}

// ---- drawing (as --draw) ----
const css = (c, a) => `rgba(${c[0]},${c[1]},${c[2]},${a})`;

function colour(k) {
  const style = about.style;
  return k === 0 ? style.middle : k % 2 === 1 ? style.left : style.right;
}

// One pose as src/verify/draw.rs draws it: edges, then keypoints on a black outline, faint below
// the threshold. `keypoint(k)` and `edge` are its colours.
function drawPose(ctx, pose, sx, sy, size, keypoint, edge) {
  const style = about.style;
  const lineR = Math.max(size * style.line_per_side, style.line_min);
  const dot = Math.max(size * style.dot_per_side, style.dot_min);
  const pts = pose.map(([x, y, s]) => (Number.isFinite(x) && Number.isFinite(y) ? [x * sx, y * sy, s >= style.threshold] : null));
  ctx.lineCap = "round";
  ctx.lineWidth = 2 * lineR;
  for (const [a, b] of about.skeleton) {
    if (!pts[a] || !pts[b]) continue;
    ctx.strokeStyle = css(edge, pts[a][2] && pts[b][2] ? style.opaque : style.faint);
    ctx.beginPath();
    ctx.moveTo(pts[a][0], pts[a][1]);
    ctx.lineTo(pts[b][0], pts[b][1]);
    ctx.stroke();
  }
  pts.forEach((p, k) => {
    if (!p) return;
    const alpha = p[2] ? style.opaque : style.faint;
    ctx.fillStyle = css(style.outline, alpha * style.outline_opacity);
    ctx.beginPath();
    ctx.arc(p[0], p[1], dot + style.outline_width, 0, 2 * Math.PI);
    ctx.fill();
    ctx.fillStyle = css(keypoint(k), alpha);
    ctx.beginPath();
    ctx.arc(p[0], p[1], dot, 0, 2 * Math.PI);
    ctx.fill();
  });
  return { pts: pts.filter(Boolean), dot };
}

function draw(keypoints, poses, input) {
  const photo = state.photo;
  const canvas = $("canvas");
  canvas.width = photo.width;
  canvas.height = photo.height;
  const ctx = canvas.getContext("2d");
  ctx.drawImage(photo, 0, 0);
  // Model-input pixels to photo pixels, per axis (as tfjs posenet scales poses back).
  const sx = photo.width / input.w, sy = photo.height / input.h;
  const size = Math.min(photo.width, photo.height);
  const style = about.style;
  const found = poses ? poses.filter((p) => p.score >= 0) : [];
  if (found.length) {
    // As --draw: pose i in the i-th pose colour, the last drawn first (the better on top), then
    // each score above its pose.
    const poseColour = (i) => style.poses[i % style.poses.length];
    const drawn = [];
    for (let i = found.length - 1; i >= 0; i--) {
      drawn[i] = drawPose(ctx, found[i].keypoints, sx, sy, size, () => poseColour(i), poseColour(i));
    }
    const unit = Math.round(Math.max(size * style.label_per_side, style.label_min));
    ctx.font = `bold ${5 * unit}px monospace`;
    ctx.textBaseline = "top";
    ctx.lineWidth = unit;
    const placed = [];
    found.forEach((p, i) => {
      const { pts, dot } = drawn[i];
      if (!pts.length) return;
      const text = p.score.toFixed(2);
      const width = 4 * text.length * unit;
      const x = Math.max(unit, Math.min(photo.width - width, ...pts.map((q) => q[0])));
      let y = Math.max(unit, Math.min(...pts.map((q) => q[1])) - dot - 7 * unit);
      // Moved down past the labels of better poses it would cover (as --draw places them).
      for (let hit; (hit = placed.find((q) => x < q.x + q.width && q.x < x + width && Math.abs(y - q.y) < 7 * unit - 0.5)); ) {
        y = hit.y + 7 * unit;
      }
      placed.push({ x, y, width });
      ctx.strokeStyle = css(style.outline, style.opaque);
      ctx.strokeText(text, x, y);
      ctx.fillStyle = css(poseColour(i), 1);
      ctx.fillText(text, x, y);
    });
  } else {
    drawPose(ctx, keypoints, sx, sy, size, colour, style.edge);
  }
  $("posesInfo").textContent = poses ? `${found.length} pose(s) found, scores ${found.map((p) => p.score.toFixed(3)).join(", ")}` : "";
}

function listKeypoints(keypoints, poses) {
  const rows = [["keypoint", "x", "y", "score"]];
  keypoints.forEach(([x, y, s], k) => rows.push([about.keypoints[k], x.toFixed(2), y.toFixed(2), s.toFixed(4)]));
  $("keypoints").innerHTML = rows.map((r, i) => `<tr>${r.map((c) => (i ? `<td>${c}</td>` : `<th>${c}</th>`)).join("")}</tr>`).join("");
}

// ---- the saving ----
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

async function measureOne(backend, size, frames, warmup) {
  const r = state.rewritten;
  let original = state.model;
  const native = imageInput(state.inspection.inspection);
  if (size !== "model" && Number(size) !== native.h) {
    const resized = await posefix.resize(state.model, Number(size));
    if (!resized.ok) throw new Error(resized.error);
    original = resized.model;
  }
  // With --prune, so that the heads are no graph outputs: ort-web's WebGL backend downloads every
  // graph output whatever the fetches say (measured: 133,144 bytes a frame without it).
  const args = r.args.includes("--prune") ? r.args : [...r.args, "--prune"];
  const again = await posefix.rewrite(original, state.modelName, r.name, args);
  if (!again.ok) throw new Error(again.error);
  const rewritten = again.model;
  const inspected = await posefix.inspect(original, state.modelName, []);
  const heads = inspected.inspection.heads;
  const inputO = imageInput(inspected.inspection);
  const how = feedsFor(r.provenance);
  const so = await sessionOn(original, backend);
  const sr = await sessionOn(rewritten, backend);
  const feedsO = ownFeeds(so, { [inputO.name]: tensorOf(state.photo, inputO, how.original) });
  const feedsR = ownFeeds(sr, { [inputO.name]: tensorOf(state.photo, inputO, how.rewritten) });
  const fetches = [r.provenance["posefix.output"]];
  if (r.provenance["posefix.poses.output"]) fetches.push(r.provenance["posefix.poses.output"], r.provenance["posefix.poses.scores_output"]);
  const sigmoid = heads.scores === "sigmoid";
  const frameO = async () => {
    const t0 = performance.now();
    const out = await so.run(feedsO); // every output: the four heads
    const hm = out[heads.heatmaps];
    decodeSinglePose(hm.data, out[heads.offsets].data, hm.dims, heads.layout, heads.stride, sigmoid);
    const ms = performance.now() - t0;
    return [ms, Object.values(out).reduce((n, t) => n + t.data.byteLength, 0)];
  };
  const frameR = async () => {
    const t0 = performance.now();
    const out = await sr.run(feedsR, fetches);
    const ms = performance.now() - t0;
    return [ms, Object.values(out).reduce((n, t) => n + t.data.byteLength, 0)];
  };
  for (let i = 0; i < warmup; i++) {
    await frameO();
    await frameR();
  }
  const to = [], tr = [];
  let bo = 0, br = 0;
  for (let i = 0; i < frames; i++) {
    // Interleaved, so that both see the same machine.
    const [a, x] = await frameO();
    const [b, y] = await frameR();
    to.push(a);
    tr.push(b);
    [bo, br] = [x, y];
  }
  await so.release();
  await sr.release();
  const mo = median(to), mr = median(tr);
  return { backend, size: inputO.h, frames, original_ms: mo, rewritten_ms: mr, time_ratio: mo / mr,
    original_bytes: bo, rewritten_bytes: br, bytes_ratio: bo / br };
}

async function measure({ frames = Number($("frames").value), sizes = $("sizes").value.split(","),
  backends = $("backends").value.split(","), warmup = 3 } = {}) {
  if (!state.rewritten) throw new Error("rewrite first");
  const rows = [];
  const table = $("saving");
  const render = () => {
    const head = "<tr><th>backend</th><th>input</th><th>original + 4 heads + JS decode</th><th>rewritten, keypoints only</th><th>time ratio</th><th>bytes read back</th><th>bytes ratio</th></tr>";
    table.innerHTML = head + rows.map((r) => `<tr><td>${r.backend}</td><td>${r.size}</td><td>${r.original_ms.toFixed(2)} ms</td>`
      + `<td>${r.rewritten_ms.toFixed(2)} ms</td><td>${r.time_ratio.toFixed(2)}x</td>`
      + `<td>${r.original_bytes.toLocaleString()} vs ${r.rewritten_bytes.toLocaleString()}</td><td>${r.bytes_ratio.toFixed(0)}x</td></tr>`).join("");
  };
  for (const backend of backends.map((b) => b.trim()).filter(Boolean)) {
    for (const size of sizes.map((s) => s.trim()).filter(Boolean)) {
      $("measureStatus").textContent = `measuring ${backend} at ${size}…`;
      rows.push(await measureOne(backend, size, frames, warmup));
      render();
    }
  }
  $("measureStatus").textContent = `${frames} frames each, medians`;
  page.saving = rows;
  return rows;
}

// ---- wiring ----
async function loadPhoto(blob, name) {
  state.photo = await createImageBitmap(blob);
  state.photoName = name;
  $("photoName").textContent = name;
}

function guard(f) {
  return async (...a) => {
    try {
      return await f(...a);
    } catch (e) {
      const msg = String(e && e.message ? e.message : e);
      page.errors.push(msg);
      $("runStatus").textContent = `error: ${msg}`;
      throw e;
    }
  };
}

async function main() {
  posefix = await Posefix.load();
  about = page.about = posefix.about();
  $("target").innerHTML = about.profiles.map((p) => `<option>${p}</option>`).join("");
  await loadOrt();
  const [model, photo] = await Promise.all([fetch(BUNDLED_MODEL), fetch(BUNDLED_PHOTO)]);
  await loadPhoto(await photo.blob(), "astronaut.png");
  await setModel(new Uint8Array(await model.arrayBuffer()), BUNDLED_MODEL.split("/").pop());
  $("options").addEventListener("input", showCommand);
  $("rewrite").onclick = guard(rewrite);
  $("run").onclick = guard(run);
  $("measure").onclick = guard(() => measure());
  const openModel = async (file) => setModel(new Uint8Array(await file.arrayBuffer()), file.name);
  $("modelFile").onchange = guard((e) => openModel(e.target.files[0]));
  const drop = $("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = guard((e) => { e.preventDefault(); drop.classList.remove("over"); return openModel(e.dataTransfer.files[0]); });
  $("photoFile").onchange = guard((e) => loadPhoto(e.target.files[0], e.target.files[0].name));
  Object.assign(page, {
    setModel, rewrite, run, measure, loadPhoto, cliArgs,
    ort: { version: ort.env.versions.web || ort.env.versions.common },
    setOptions(values) {
      const form = $("options");
      for (const el of form.elements) {
        if (!el.name) continue;
        if (el.type === "checkbox") el.checked = !!values[el.name];
        else el.value = values[el.name] ?? (el.name === "target" ? "portable" : "");
      }
      showCommand();
    },
  });
  // A newcomer sees the whole thing at once: the bundled model rewritten, run and drawn, and the
  // two frame times and byte counts beside it (a short measurement on the backend it ran on).
  await rewrite();
  const query = new URLSearchParams(location.search);
  if (!query.has("norun")) {
    const result = await guard(run)();
    if (!query.has("nomeasure")) await guard(measure)({ frames: 3, warmup: 1, sizes: ["model"], backends: [result.backend] });
  }
  page.ready = true;
}

main().catch((e) => {
  page.errors.push(String(e && e.stack ? e.stack : e));
  page.failed = true;
  $("inspect").textContent = `the page failed to start: ${e}`;
});
