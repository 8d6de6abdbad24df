// The page side of driver.mjs: loads models into onnxruntime-web sessions and runs them.
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
  info() {
    return { ort: ort.env.versions.web || ort.env.versions.common, webgl: webglInfo(),
      crossOriginIsolated: self.crossOriginIsolated, userAgent: navigator.userAgent };
  },
  async load(backend, url) {
    let session;
    try {
      // Exactly one execution provider: no fallback to another backend.
      session = await ort.InferenceSession.create(url, { executionProviders: [backend], graphOptimizationLevel: "all" });
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
    const id = nextSession++;
    sessions.set(id, session);
    return { ok: true, session: id, inputs: session.inputNames, outputs: session.outputNames };
  },
  async run(id, feeds) {
    const session = sessions.get(id);
    if (!session) return { ok: false, error: `no session ${id}` };
    const inputs = {};
    for (const f of feeds) {
      const buf = await (await fetch(f.url)).arrayBuffer();
      inputs[f.name] = new ort.Tensor(f.type, new arrays[f.type](buf), f.dims);
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
