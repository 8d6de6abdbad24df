// Drives web/bench.html (web/bench.mjs) in Debian's headless Chromium for `cargo bench --bench
// posefix -- web`: the per-node cost per backend and the decoder alone against read-back + JS.
//
// node web/test/bench.mjs PLAN.json OUT.json
//   PLAN.json (written by benches/posefix/web.rs; paths absolute):
//     {"backends": ["wasm", "webgl", "webgpu"], "frames": 20, "warmup": 3,
//      "chain": {"long": PATH, "short": PATH, "long_nodes": 300, "short_nodes": 1},
//      "decoders": [{"size", "kind": "single"|"multi", "max_poses", "stride", "score_threshold",
//        "nms_radius", "decoder": PATH, "read_back": PATH, "outputs": [...],
//        "read_back_outputs": [...], "decoder_nodes", "heads": [{"name", "path", "dims"}]}]}
//   OUT.json: {"info": {...}, "chain": [row per backend], "decoders": [row per backend and plan]}
// A backend the browser cannot run (WebGPU without an adapter) fails the run: the bench is
// meant to measure all three.
//
// web/ (built by web/build.sh) and the plan's files are served on 127.0.0.1 (the files by a
// one-time token each, never by a path the page makes up), with cross-origin isolation headers.
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const web = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const root = path.dirname(web);
const require = createRequire(path.join(root, "conformance/legs/ort_web/package.json"));
const puppeteer = require("puppeteer-core");

const [planPath, outPath] = process.argv.slice(2);
if (!planPath || !outPath) {
  console.error("usage: node web/test/bench.mjs PLAN.json OUT.json");
  process.exit(2);
}
const plan = JSON.parse(fs.readFileSync(planPath, "utf8"));
const started = Date.now();
const log = (...a) => console.error(`[web bench ${((Date.now() - started) / 1000).toFixed(1)}s]`, ...a);

const files = new Map();
let next = 1;
const serve = (p) => {
  const token = String(next++);
  files.set(token, p);
  return `/f/${token}/${path.basename(p)}`;
};
const types = { ".mjs": "text/javascript", ".js": "text/javascript", ".html": "text/html", ".wasm": "application/wasm",
  ".json": "application/json" };
const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  let file = null;
  const m = /^\/f\/(\d+)\//.exec(url.pathname);
  if (m) file = files.get(m[1]) ?? null;
  else {
    const p = path.normalize(path.join(web, decodeURIComponent(url.pathname)));
    if (p.startsWith(web + path.sep)) file = p;
  }
  let real = null;
  try {
    real = file && fs.statSync(file).isFile() ? file : null;
  } catch {
    real = null;
  }
  if (!real) {
    res.writeHead(404);
    res.end("not found");
    return;
  }
  res.writeHead(200, { "Content-Type": types[path.extname(real)] || "application/octet-stream", "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" });
  fs.createReadStream(real).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const origin = `http://127.0.0.1:${server.address().port}`;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "posefix-web-bench-"));
// As web/test/run.mjs and conformance/legs/ort_web/driver.mjs: WebGL 2 and WebGPU on SwiftShader.
const browser = await puppeteer.launch({
  executablePath: process.env.POSEFIX_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  userDataDir: profile,
  protocolTimeout: 3_600_000,
  args: [
    "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--ignore-gpu-blocklist", "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader",
  ],
});
let code = 0;
try {
  const page = await browser.newPage();
  page.on("pageerror", (e) => log("pageerror", e.message));
  page.on("console", (m) => m.type() === "error" && log("console error", m.text()));
  await page.goto(`${origin}/bench.html`, { waitUntil: "load" });
  await page.waitForFunction("window.posefixBench && window.posefixBench.ready", { timeout: 120_000 });
  const info = await page.evaluate(() => posefixBench.info());
  info.chromium = await browser.version();
  log(`onnxruntime-web ${info.ort}, ${info.chromium}, WebGPU adapter ${JSON.stringify(info.webgpu)}`);
  if (plan.backends.includes("webgpu") && !info.webgpu) throw new Error("this Chromium gives no WebGPU adapter");
  const result = { info, chain: [], decoders: [] };
  const chain = { ...plan.chain, long: serve(plan.chain.long), short: serve(plan.chain.short) };
  for (const backend of plan.backends) {
    const row = await page.evaluate((b, c, f, w) => posefixBench.chain(b, c, f, w), backend, chain, plan.frames, plan.warmup);
    log(`${backend}: ${row.long_nodes} Adds ${row.long_ms.toFixed(2)} ms, ${row.short_nodes} ${row.short_ms.toFixed(2)} ms: `
      + `${row.per_node_us.toFixed(1)} us a node`);
    result.chain.push(row);
  }
  for (const backend of plan.backends) {
    for (const d of plan.decoders) {
      const c = { ...d, decoder: serve(d.decoder), read_back: serve(d.read_back),
        heads: d.heads.map((h) => ({ name: h.name, dims: h.dims, url: serve(h.path) })) };
      const frames = d.frames ?? plan.frames;
      const row = await page.evaluate((b, c_, f, w) => posefixBench.decoder(b, c_, f, w), backend, c, frames, plan.warmup);
      log(`${backend} ${d.size} ${d.kind}${d.max_poses ? ` N=${d.max_poses}` : ""}: decoder ${row.decoder_ms.toFixed(2)} ms `
        + `(${row.decoder_bytes} B), read-back + JS ${row.read_back_js_ms.toFixed(2)} ms (${row.read_back_bytes} B); `
        + `max |d pos| ${row.max_dpos.toExponential(1)}${row.poses ? `, poses ${JSON.stringify(row.poses)}` : ""}`);
      result.decoders.push(row);
    }
  }
  fs.writeFileSync(outPath, JSON.stringify(result, null, 2));
} catch (e) {
  console.error(`web bench failed: ${e && e.stack ? e.stack : e}`);
  code = 1;
} finally {
  await browser.close().catch(() => {});
  server.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
process.exit(code);
