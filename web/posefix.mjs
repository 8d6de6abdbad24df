// The JS side of web/wasm's extern "C" ABI: onnx-posefix's rewrite and inspect, in memory.
// Works in the browser (fetch) and in node (give the wasm bytes). Each call runs in the current
// instance; a trap (a panic: wasm32 cannot unwind) is turned into the panic's one error line and
// the next call gets a fresh instance.

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class Posefix {
  static async load(source = new URL("./pkg/posefix_wasm.wasm", import.meta.url)) {
    const bytes = source instanceof ArrayBuffer || ArrayBuffer.isView(source)
      ? source
      : await (await fetch(source)).arrayBuffer();
    const module = await WebAssembly.compile(bytes);
    const p = new Posefix(module);
    await p.fresh();
    return p;
  }

  constructor(module) {
    this.module = module;
  }

  async fresh() {
    this.instance = await WebAssembly.instantiate(this.module, {});
    this.x = this.instance.exports;
  }

  put(bytes) {
    const ptr = this.x.posefix_alloc(bytes.length);
    new Uint8Array(this.x.memory.buffer, ptr, bytes.length).set(bytes);
    return [ptr, bytes.length];
  }

  read(ptr, len) {
    return new Uint8Array(this.x.memory.buffer, ptr, len).slice();
  }

  reply() {
    return JSON.parse(decoder.decode(this.read(this.x.posefix_reply_ptr(), this.x.posefix_reply_len())));
  }

  async call(fn, model, request) {
    const x = this.x;
    let m, r;
    try {
      m = this.put(model);
      r = this.put(encoder.encode(JSON.stringify(request)));
      x[fn](m[0], m[1], r[0], r[1]);
      const reply = this.reply();
      if (fn === "posefix_rewrite" && reply.ok) {
        reply.model = this.read(x.posefix_model_ptr(), x.posefix_model_len());
      }
      x.posefix_free(m[0], m[1]);
      x.posefix_free(r[0], r[1]);
      return reply;
    } catch (e) {
      if (!(e instanceof WebAssembly.RuntimeError)) throw e;
      const line = decoder.decode(this.read(x.posefix_panic_ptr(), x.posefix_panic_len()));
      await this.fresh();
      return { ok: false, error: line || `error: internal error: ${e.message}` };
    }
  }

  /// `onnx-posefix inspect NAME ARGS` (only --input-shape matters): {ok, text, inspection} or {ok: false, error}.
  inspect(model, name, args = []) {
    return this.call("posefix_inspect", model, { name, args });
  }

  /// `onnx-posefix NAME OUT ARGS`: {ok, summary, notes, provenance, grid, model} or {ok: false, error}.
  rewrite(model, name, out, args = []) {
    return this.call("posefix_rewrite", model, { name, out, args });
  }

  /// The model declared for a size x size input (outputs on the matching grid): {ok, model} or {ok: false, error}.
  async resize(model, size) {
    const x = this.x;
    const m = this.put(model);
    x.posefix_resize(m[0], m[1], size);
    const reply = this.reply();
    if (reply.ok) reply.model = this.read(x.posefix_model_ptr(), x.posefix_model_len());
    x.posefix_free(m[0], m[1]);
    return reply;
  }

  /// Keypoint names, skeleton edges, version, profiles: the library's.
  about() {
    this.x.posefix_about();
    return this.reply();
  }
}
