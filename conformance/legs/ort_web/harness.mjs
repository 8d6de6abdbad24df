// The page side of driver.mjs: loads models into onnxruntime-web sessions and runs them.
// WebGL and wasm run in the package's `ort.all.mjs`; WebGPU in its own bundle,
// `ort.webgpu.min.mjs` (loaded at the first WebGPU session): that bundle runs onnxruntime's C++
// WebGPU execution provider (the `asyncify` wasm build), while `ort.all`'s "webgpu" is the older
// JavaScript kernels (JSEP, `jsep` build). What a user of `ort.webgpu.min.js` gets is the former.
import * as ort from "/dist/ort.all.mjs";

// wasm: one thread, files from our own server.
ort.env.wasm.wasmPaths = "/dist/";
ort.env.wasm.numThreads = 1;
ort.env.wasm.proxy = false;
// WebGL: insist on WebGL 2 (ort would otherwise fall back to WebGL 1 quietly); ort's defaults for
// the rest (unpacked textures, pack = false), as a user who only names the backend gets them.
ort.env.webgl.contextId = "webgl2";
ort.env.logLevel = "error";

const sessions = new Map();
let nextSession = 1;

// The WebGPU bundle, configured as `ort` (one thread, files from our own server).
let gpuOrt = null;
async function ortFor(backend) {
  if (backend !== "webgpu") return ort;
  if (!gpuOrt) {
    const m = await import("/dist/ort.webgpu.min.mjs");
    m.env.wasm.wasmPaths = "/dist/";
    m.env.wasm.numThreads = 1;
    m.env.wasm.proxy = false;
    m.env.logLevel = "error";
    gpuOrt = m;
  }
  return gpuOrt;
}

async function webgpuInfo() {
  if (!navigator.gpu) return { webgpu: false, why: "no navigator.gpu" };
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) return { webgpu: false, why: "no adapter" };
  const i = adapter.info || {};
  return { webgpu: true, vendor: i.vendor, architecture: i.architecture, description: i.description,
    shader_f16: adapter.features.has("shader-f16") };
}

function webglInfo() {
  const gl = document.createElement("canvas").getContext("webgl2");
  if (!gl) return { webgl2: false };
  const ext = gl.getExtension("WEBGL_debug_renderer_info");
  return {
    webgl2: true,
    renderer: ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER),
    vendor: ext ? gl.getParameter(ext.UNMASKED_VENDOR_WEBGL) : gl.getParameter(gl.VENDOR),
    version: gl.getParameter(gl.VERSION),
    float_color_buffer: !!gl.getExtension("EXT_color_buffer_float"),
    max_texture_size: gl.getParameter(gl.MAX_TEXTURE_SIZE),
  };
}

function toB64(bytes) {
  let s = "";
  const chunk = 0x8000;
  for (let i = 0; i < bytes.length; i += chunk) s += String.fromCharCode.apply(null, bytes.subarray(i, i + chunk));
  return btoa(s);
}

const arrays = { float32: Float32Array, int32: Int32Array, int64: BigInt64Array, uint8: Uint8Array,
  int8: Int8Array, bool: Uint8Array, float64: Float64Array, float16: Uint16Array };

function message(e) {
  return String(e && e.message ? e.message : e);
}

window.posefix = {
  ready: true,
  async info() {
    return { ort: ort.env.versions.web || ort.env.versions.common, webgl: webglInfo(), webgpu: await webgpuInfo(),
      crossOriginIsolated: self.crossOriginIsolated, userAgent: navigator.userAgent };
  },
  async load(backend, url) {
    let session;
    try {
      const o = await ortFor(backend);
      // Exactly one execution provider: no fallback to another backend. On WebGPU, onnxruntime
      // would quietly place the nodes its WebGPU provider has no kernel for on the CPU (wasm):
      // `session.disable_cpu_ep_fallback` makes such a model fail to load instead, naming the node.
      const options = { executionProviders: [backend], graphOptimizationLevel: "all" };
      if (backend === "webgpu") options.extra = { session: { disable_cpu_ep_fallback: "1" } };
      session = await o.InferenceSession.create(url, options);
    } catch (e) {
      return { ok: false, error: message(e) };
    }
    if (backend === "webgl") {
      const gl = ort.env.webgl.context;
      if (!(gl instanceof WebGL2RenderingContext)) {
        await session.release();
        return { ok: false, error: `ort-web did not run on a WebGL 2 context (got ${gl && gl.constructor && gl.constructor.name})` };
      }
    }
    session.posefixOrt = await ortFor(backend);
    const id = nextSession++;
    sessions.set(id, session);
    return { ok: true, session: id, inputs: session.inputNames, outputs: session.outputNames };
  },
  async run(id, feeds) {
    const session = sessions.get(id);
    if (!session) return { ok: false, error: `no session ${id}` };
    const inputs = {};
    const o = session.posefixOrt || ort;
    for (const f of feeds) {
      const buf = await (await fetch(f.url)).arrayBuffer();
      inputs[f.name] = new o.Tensor(f.type, new arrays[f.type](buf), f.dims);
    }
    let results;
    try {
      results = await session.run(inputs);
    } catch (e) {
      return { ok: false, error: message(e) };
    }
    const outputs = [];
    for (const name of session.outputNames) {
      const t = results[name];
      if (!t) return { ok: false, error: `output ${name} missing from the results` };
      const data = t.location && t.location !== "cpu" ? await t.getData() : t.data;
      const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      outputs.push({ name, type: t.type, dims: Array.from(t.dims), b64: toB64(bytes) });
      if (t.dispose) t.dispose();
    }
    return { ok: true, outputs };
  },
  async release(id) {
    const session = sessions.get(id);
    sessions.delete(id);
    if (session) await session.release();
    return { ok: true };
  },
};
