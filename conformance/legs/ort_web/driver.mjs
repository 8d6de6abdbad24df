// Worker for runtime.py: serves the harness page and onnxruntime-web's dist files on 127.0.0.1,
// drives the system Chromium (headless, SwiftShader WebGL) with puppeteer-core and answers
// JSON-line requests on stdin with JSON-line replies on stdout (logs go to stderr).
//
// Requests (one JSON object a line; `id` is echoed back):
//   {"id": 1, "cmd": "info"}
//   {"id": 2, "cmd": "load", "backend": "webgl"|"wasm"|"webgpu", "path": "/abs/model.onnx"}
//        -> {"id": 2, "ok": true, "session": 3, "inputs": [...], "outputs": [...]}
//   {"id": 4, "cmd": "run", "session": 3, "feeds": [{"name": "image", "path": "/abs/x.bin",
//        "dims": [1, 3, 257, 257], "type": "float32"}]}
//        -> {"id": 4, "ok": true, "outputs": [{"name", "type", "dims", "b64"}]} (raw little-endian bytes)
//   {"id": 5, "cmd": "release", "session": 3}
//   {"id": 6, "cmd": "quit"}
// A failure is {"id": N, "ok": false, "error": "<the runtime's message>"}.
//
// Files are only served when a request names them (a registered whitelist), never by a path the
// page makes up.
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import puppeteer from "puppeteer-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "node_modules", "onnxruntime-web", "dist");
const chromium = process.env.POSEFIX_CHROMIUM || "/usr/bin/chromium";
const log = (...a) => process.stderr.write(`[ort-web driver] ${a.join(" ")}\n`);

const types = { ".mjs": "text/javascript", ".js": "text/javascript", ".html": "text/html",
  ".wasm": "application/wasm", ".json": "application/json" };
const files = new Map(); // token -> absolute path
let nextToken = 1;
function register(p) {
  const token = String(nextToken++);
  files.set(token, p);
  return `/f/${token}`;
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://127.0.0.1");
  let file = null;
  if (url.pathname === "/" || url.pathname === "/harness.html") file = path.join(here, "harness.html");
  else if (url.pathname === "/harness.mjs") file = path.join(here, "harness.mjs");
  else if (url.pathname.startsWith("/dist/")) {
    const name = path.basename(url.pathname);
    if (/^[A-Za-z0-9._-]+$/.test(name)) file = path.join(dist, name);
  } else if (url.pathname.startsWith("/f/")) {
    file = files.get(url.pathname.slice(3)) ?? null;
  }
  if (!file || !fs.existsSync(file)) {
    res.writeHead(404);
    res.end("not found");
    return;
  }
  const headers = {
    "Content-Type": types[path.extname(file)] || "application/octet-stream",
    "Cache-Control": "no-store",
    // Cross-origin isolation, so that SharedArrayBuffer exists (ort-web checks for it).
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
  };
  res.writeHead(200, headers);
  fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const origin = `http://127.0.0.1:${server.address().port}`;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "posefix-ort-web-chromium-"));
const browser = await puppeteer.launch({
  executablePath: chromium,
  headless: true,
  userDataDir: profile,
  protocolTimeout: 900_000,
  args: [
    "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--ignore-gpu-blocklist",
    // WebGPU on SwiftShader's Vulkan (Chromium 156 on Debian needs nothing more: no GPU, no
    // mesa; without --enable-unsafe-webgpu navigator.gpu gives no adapter on Linux).
    "--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader",
  ],
});
const page = await browser.newPage();
const consoleLines = [];
page.on("console", (m) => {
  const line = `${m.type()}: ${m.text()}`;
  consoleLines.push(line);
  if (consoleLines.length > 200) consoleLines.shift();
  if (process.env.POSEFIX_ORT_WEB_VERBOSE) log("console", line);
});
page.on("pageerror", (e) => log("pageerror", e.message));
await page.goto(`${origin}/harness.html`, { waitUntil: "load" });
await page.waitForFunction("window.posefix && window.posefix.ready", { timeout: 120_000 });
const info = await page.evaluate(() => window.posefix.info());
info.chromium = await browser.version();
log(`ready at ${origin}: ${JSON.stringify(info)}`);

async function handle(req) {
  switch (req.cmd) {
    case "info":
      return { ...info, console: consoleLines.slice(-20) };
    case "load": {
      const url = register(req.path);
      return await page.evaluate((b, u) => window.posefix.load(b, u), req.backend, url);
    }
    case "run": {
      const feeds = req.feeds.map((f) => ({ ...f, url: register(f.path) }));
      try {
        return await page.evaluate((s, fs_) => window.posefix.run(s, fs_), req.session, feeds);
      } finally {
        for (const f of feeds) files.delete(f.url.slice(3));
      }
    }
    case "release":
      return await page.evaluate((s) => window.posefix.release(s), req.session);
    default:
      throw new Error(`unknown command ${req.cmd}`);
  }
}

let closing = false;
async function shutdown(code) {
  closing = true;
  try { await browser.close(); } catch { /* already gone */ }
  server.close();
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}

process.stdout.write(JSON.stringify({ id: 0, ok: true, ...info }) + "\n");
const rl = readline.createInterface({ input: process.stdin });
const queue = [];
let busy = false;
rl.on("line", (line) => { queue.push(line); pump(); });
rl.on("close", () => { queue.push('{"cmd":"quit"}'); pump(); });
async function pump() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const line = queue.shift();
    if (!line.trim()) continue;
    let req;
    try { req = JSON.parse(line); } catch (e) { log("bad request", line); continue; }
    if (req.cmd === "quit") {
      process.stdout.write(JSON.stringify({ id: req.id, ok: true }) + "\n");
      await shutdown(0);
    }
    let reply;
    try {
      const out = await handle(req);
      reply = { ok: true, ...out };
      if (out && out.ok === false) reply = out;
    } catch (e) {
      reply = { ok: false, error: String(e && e.message ? e.message : e) };
    }
    process.stdout.write(JSON.stringify({ id: req.id, ...reply }) + "\n");
  }
  busy = false;
}
browser.on("disconnected", () => {
  if (closing) return;
  log("browser disconnected");
  process.exit(3);
});
