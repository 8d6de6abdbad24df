// The browser page's test, as a user would use it: Python's static server on 127.0.0.1 serves
// web/ (built by web/build.sh), Debian's headless Chromium opens it (puppeteer-core, pinned in
// conformance/legs/ort_web), and the page, through its own window.posefixPage, must:
//   1. rewrite the bundled model in wasm into the very bytes the CLI writes, with the CLI's
//      summary line, for several option sets (single pose, --poses, --prune, --pixels,
//      --output-type float16), and run the float16 one (ort-web refuses float16 on WebGL: the
//      page falls back to wasm);
//   2. show what `onnx-posefix inspect` prints;
//   3. say the CLI's one error line for a non-ONNX file, an already rewritten model, a model
//      whose heatmaps are not found (--heatmaps names no output) and a usage error;
//   4. run the rewritten model with onnxruntime-web (WebGPU, falling back to WebGL, then wasm) on
//      the bundled photo, and draw keypoints equal to the reference decoder's on the heads of that
//      same run (examples/decode_page), single pose and --poses; in this Chromium (WebGPU on
//      SwiftShader) the first runs must be on WebGPU;
//   5. keep a screenshot; with --measure, also measure the saving (the bench harness's
//      `web` section uses that);
//   6. fall back to WebGL in a Chromium without WebGPU, and to wasm in one without WebGL either.
//
// node web/test/run.mjs --cli PATH --decode PATH [--out DIR] [--measure] [--frames N]
//   --cli     the onnx-posefix binary; --decode the decode_page example binary
//   --out     where the screenshot, results and measurement go (default web/out)
//   --measure-only: only the saving (no CLI needed); --frames N, --warmup N, --sizes model,513,
//             --backends webgpu,webgl,wasm: what it measures
// Exit 0 when every check passed; each failure is printed as `FAIL ...`.
import { spawn, execFileSync, spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const web = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const root = path.dirname(web);
const require = createRequire(path.join(root, "conformance/legs/ort_web/package.json"));
const puppeteer = require("puppeteer-core");

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const cli = opt("--cli") && path.resolve(opt("--cli"));
const decode = opt("--decode") && path.resolve(opt("--decode"));
const out = path.resolve(opt("--out", path.join(web, "out")));
const measureOnly = argv.includes("--measure-only");
const measure = measureOnly || argv.includes("--measure");
const frames = Number(opt("--frames", "20"));
const warmup = Number(opt("--warmup", "3"));
const sizes = opt("--sizes", "model,513").split(",");
const backends = opt("--backends", "webgpu,webgl,wasm").split(",");
if (!measureOnly && (!cli || !decode)) {
  console.error("usage: node web/test/run.mjs --cli ONNX_POSEFIX --decode DECODE_PAGE [--out DIR] [--measure]");
  process.exit(2);
}
fs.mkdirSync(out, { recursive: true });
const started = Date.now();
const log = (...a) => console.log(`[web test ${((Date.now() - started) / 1000).toFixed(1)}s]`, ...a);
let failures = 0;
const fail = (what) => {
  failures++;
  console.log(`FAIL ${what}`);
};
const pass = (what) => console.log(`ok   ${what}`);
const check = (cond, what) => (cond ? pass(what) : fail(what));

// ---- the CLI on the same input ----
const MODEL = "posenet-mobilenet075-257.onnx";
const OUT = "posenet-mobilenet075-257-posefix.onnx";
const work = fs.mkdtempSync(path.join(os.tmpdir(), "posefix-web-test-"));
fs.copyFileSync(path.join(root, "models", MODEL), path.join(work, MODEL));
function runCli(args) {
  const r = spawnSync(cli, args, { cwd: work, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout.trimEnd(), stderr: r.stderr.trimEnd() };
}

// ---- server and browser ----
const server = spawn("python3", ["-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory", web],
  { stdio: ["ignore", "pipe", "pipe"] });
const port = await new Promise((ok, no) => {
  server.stdout.on("data", (d) => {
    const m = /port (\d+)/.exec(String(d));
    if (m) ok(Number(m[1]));
  });
  server.on("exit", (c) => no(new Error(`http.server exited ${c}`)));
  setTimeout(() => no(new Error("http.server did not start")), 20_000);
});
server.stderr.on("data", () => {}); // request log
const origin = `http://127.0.0.1:${port}`;
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "posefix-web-chromium-"));
// WebGPU on SwiftShader's Vulkan: Chromium 156 on Linux gives no adapter without the first.
const WEBGPU_FLAGS = ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"];
const launchOptions = {
  executablePath: process.env.POSEFIX_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  userDataDir: profile,
  protocolTimeout: 1_800_000,
  // As conformance/legs/ort_web/driver.mjs: WebGL 2 and WebGPU on SwiftShader, no network beyond
  // 127.0.0.1.
  args: [
    "--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--ignore-gpu-blocklist", ...WEBGPU_FLAGS,
  ],
};
const browser = await puppeteer.launch(launchOptions);
const cleanup = async () => {
  await browser.close().catch(() => {});
  server.kill();
  fs.rmSync(profile, { recursive: true, force: true });
  fs.rmSync(work, { recursive: true, force: true });
};

try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 1300 });
  page.on("pageerror", (e) => log("pageerror", e.message));
  page.on("console", (m) => m.type() === "error" && log("console error", m.text()));
  // Measuring only: without the short measurement the page makes at start.
  await page.goto(`${origin}/${measureOnly ? "?nomeasure" : ""}`, { waitUntil: "load" });
  await page.waitForFunction("window.posefixPage && (window.posefixPage.ready || window.posefixPage.failed)",
    { timeout: 600_000, polling: 500 });
  const startup = await page.evaluate(async () => ({ failed: !!posefixPage.failed, errors: posefixPage.errors,
    ort: posefixPage.ort, backend: posefixPage.result && posefixPage.result.backend,
    fallback: posefixPage.result && posefixPage.result.fallback,
    adapter: !!(navigator.gpu && await navigator.gpu.requestAdapter()) }));
  log(`page ready: onnxruntime-web ${JSON.stringify(startup.ort)}, first run on ${startup.backend}`);
  if (startup.failed) throw new Error(`the page failed: ${startup.errors.join("; ")}`);
  if (!measureOnly) {
    // This Chromium has WebGPU (SwiftShader): the page's first choice must have run.
    check(startup.adapter, "this Chromium gives the page a WebGPU adapter (--enable-unsafe-webgpu)");
    check(startup.backend === "webgpu" && !startup.fallback,
      `at start the page ran the rewritten model on WebGPU (${startup.backend}${startup.fallback ? `: ${startup.fallback}` : ""})`);
  }
  await page.screenshot({ path: path.join(out, "page.png"), fullPage: true });
  log(`screenshot ${path.join(out, "page.png")}`);

  const rewriteIn = (options) => page.evaluate(async (o) => {
    posefixPage.setOptions(o);
    const r = await posefixPage.rewrite();
    return r.ok ? { ok: true, summary: r.summary, b64: btoa(Array.from(r.model, (c) => String.fromCharCode(c)).join("")) } : r;
  }, options);

  if (!measureOnly) {
    // 0. As a user: what the page showed at start (the pose, the two frame times and byte
    // counts), then the bundled model dropped on the drop zone, Rewrite clicked, the download
    // link's bytes equal to the CLI's.
    const shown = await page.evaluate(() => ({ saving: posefixPage.saving, drawn: posefixPage.result.keypoints.length,
      table: document.getElementById("saving").rows.length }));
    check(shown.drawn === 17 && shown.table === 2 && shown.saving.length === 1 && shown.saving[0].rewritten_bytes === 204
      && shown.saving[0].original_bytes === 132940 && shown.saving[0].backend === startup.backend,
      `at start the page drew 17 keypoints and shows one saving row (${JSON.stringify(shown.saving)})`);
    const model0 = fs.readFileSync(path.join(work, MODEL));
    await page.evaluate(async (b64, name) => {
      const file = new File([Uint8Array.from(atob(b64), (c) => c.charCodeAt(0))], name);
      const dt = new DataTransfer();
      dt.items.add(file);
      const drop = document.getElementById("drop");
      drop.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
      await new Promise((ok) => setTimeout(ok, 200));
      while (document.getElementById("modelName").textContent !== name || document.getElementById("inspect").textContent === "") {
        await new Promise((ok) => setTimeout(ok, 100));
      }
      document.getElementById("download").hidden = true;
    }, model0.toString("base64"), MODEL);
    await page.click("#rewrite");
    await page.waitForFunction(() => !document.getElementById("download").hidden, { timeout: 120_000 });
    const downloaded = Buffer.from(await page.evaluate(async () => {
      const a = document.getElementById("download");
      const bytes = new Uint8Array(await (await fetch(a.href)).arrayBuffer());
      return { name: a.download, b64: btoa(Array.from(bytes, (c) => String.fromCharCode(c)).join("")) };
    }).then((d) => { check(d.name === OUT, `the download is named ${d.name}`); return d.b64; }), "base64");
    const cliDefault = runCli([MODEL, OUT]);
    check(cliDefault.status === 0 && downloaded.equals(fs.readFileSync(path.join(work, OUT))),
      `dropped, Rewrite clicked: the downloaded model is the CLI's bytes (${downloaded.length} bytes)`);

    // 1. Bytes and summary line equal to the CLI's.
    const cases = [
      [{}, []],
      [{ poses: "3" }, ["--poses", "3"]],
      [{ poses: "2", "score-threshold": "0.3", "nms-radius": "15", prune: true }, ["--poses", "2", "--score-threshold", "0.3", "--nms-radius", "15", "--prune"]],
      [{ pixels: "byte", preprocess: "mobilenet", "output-name": "kp", target: "ort-web-webgl" }, ["--pixels", "byte", "--preprocess", "mobilenet", "--output-name", "kp", "--target", "ort-web-webgl"]],
      [{ "output-type": "float16", poses: "2", target: "opencv-4.x" }, ["--output-type", "float16", "--poses", "2", "--target", "opencv-4.x"]],
    ];
    for (const [options, args] of cases) {
      const pageArgs = await page.evaluate((o) => { posefixPage.setOptions(o); return posefixPage.cliArgs(); }, options);
      const cliRun = runCli([MODEL, OUT, ...args]);
      const mine = await rewriteIn(options);
      const what = `rewrite ${args.join(" ") || "(defaults)"}`;
      if (!mine.ok || cliRun.status !== 0) {
        fail(`${what}: page ${mine.error || "ok"}, CLI exit ${cliRun.status} ${cliRun.stderr}`);
        continue;
      }
      // The same flags, in the page's order (the form's).
      const pairs = (a) => a.map((x, i) => (x.startsWith("--") ? `${x} ${a[i + 1]?.startsWith("--") || i + 1 === a.length ? "" : a[i + 1]}` : null)).filter(Boolean).sort();
      check(JSON.stringify(pairs(pageArgs)) === JSON.stringify(pairs(args)), `${what}: the page's flags are the CLI's (${pageArgs.join(" ")})`);
      const cliBytes = fs.readFileSync(path.join(work, OUT));
      const pageBytes = Buffer.from(mine.b64, "base64");
      check(cliBytes.equals(pageBytes), `${what}: the page's bytes equal the CLI's (${pageBytes.length} and ${cliBytes.length} bytes)`);
      check(mine.summary === cliRun.stdout.split("\n")[0], `${what}: the summary line is the CLI's\n       page: ${mine.summary}\n       CLI:  ${cliRun.stdout.split("\n")[0]}`);
    }

    // 2. Inspect.
    const inspectText = await page.evaluate(async () => {
      posefixPage.setOptions({});
      return document.getElementById("inspect").textContent;
    });
    const cliInspect = runCli(["inspect", MODEL]);
    check(inspectText === cliInspect.stdout, "the page shows what `onnx-posefix inspect` prints");

    // 3. Error lines.
    fs.writeFileSync(path.join(work, "not-a-model.onnx"), "this is not an ONNX model\n");
    const rewritten = fs.readFileSync(path.join(work, OUT)); // the last case's CLI output
    fs.writeFileSync(path.join(work, "rewritten.onnx"), rewritten);
    const model = fs.readFileSync(path.join(work, MODEL));
    const errorCases = [
      ["not-a-model.onnx", fs.readFileSync(path.join(work, "not-a-model.onnx")), {}, []],
      ["rewritten.onnx", rewritten, {}, []],
      [MODEL, model, { heatmaps: "no_such_output" }, ["--heatmaps", "no_such_output"]],
      [MODEL, model, { pixels: "unit" }, ["--pixels", "unit"]],
      [MODEL, model, { "nms-radius": "5" }, ["--nms-radius", "5"]],
    ];
    for (const [name, bytes, options, args] of errorCases) {
      const cliRun = runCli([name, "out.onnx", ...args]);
      const pageLine = await page.evaluate(async (name, b64, o) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        await posefixPage.setModel(bytes, name);
        posefixPage.setOptions(o);
        const r = await posefixPage.rewrite();
        return r.ok ? "(no error)" : document.querySelector("#result .error").textContent;
      }, name, bytes.toString("base64"), options);
      const cliLine = cliRun.stderr.split("\n").filter((l) => l.trim())
        .slice(0, cliRun.stderr.startsWith("error: the following required") ? 2 : 1).map((l) => l.trim()).join(" ");
      check(cliRun.status === 2 && pageLine === cliLine,
        `error for ${name} ${args.join(" ")}: the page says the CLI's line\n       page: ${pageLine}\n       CLI:  ${cliLine}`);
    }

    // 4. Run and draw: the drawn keypoints against the reference on the same run's heads.
    const float16Outputs = { "output-type": "float16", poses: "2", target: "opencv-4.x" };
    for (const [options, label] of [[{}, "single pose"], [{ poses: "3" }, "--poses 3"], [float16Outputs, "--output-type float16"]]) {
      const result = await page.evaluate(async (o, b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        await posefixPage.setModel(bytes, "posenet-mobilenet075-257.onnx");
        posefixPage.setOptions(o);
        const r = await posefixPage.rewrite();
        if (!r.ok) return { error: r.error };
        return await posefixPage.run();
      }, options, model.toString("base64"));
      if (result.error) {
        fail(`${label}: ${result.error}`);
        continue;
      }
      fs.writeFileSync(path.join(out, `result-${label.replace(/\W+/g, "")}.json`), JSON.stringify(result));
      if (label !== "--output-type float16") {
        check(result.backend === "webgpu", `${label}: ran on WebGPU (${result.backend}${result.fallback ? `: ${result.fallback}` : ""})`);
      }
      const s = result.settings;
      const file = (name) => {
        const p = path.join(work, `${name}.bin`);
        fs.writeFileSync(p, Buffer.from(result.outputs[name].b64, "base64"));
        return p;
      };
      const request = {
        heatmaps: file(s.heatmaps), heatmaps_dims: result.outputs[s.heatmaps].dims,
        offsets: file(s.offsets), offsets_dims: result.outputs[s.offsets].dims,
        layout: s.layout, stride: s.stride, scores: s.scores, output_type: s.output_type,
        multi: s.multi && { fwd: file(s.multi.fwd), bwd: file(s.multi.bwd), max_poses: s.multi.max_poses,
          score_threshold: s.multi.score_threshold, nms_radius: s.multi.nms_radius },
      };
      const reference = JSON.parse(execFileSync(decode, { input: JSON.stringify(request), encoding: "utf8" }));
      const f32 = (v) => Math.fround(v);
      const compare = (got, want, what) => {
        let posExact = true, scoreErr = 0;
        for (let i = 0; i < want.length; i++) {
          const [gx, gy, gs] = got[i], [wx, wy, ws] = want[i];
          if (f32(gx) !== f32(wx) || f32(gy) !== f32(wy)) posExact = false;
          scoreErr = Math.max(scoreErr, Math.abs(gs - ws));
        }
        check(posExact && scoreErr <= 1e-5, `${label} on ${result.backend}: ${what} positions ${posExact ? "bit-exact" : "NOT bit-exact"}, scores within ${scoreErr.toExponential(1)} (<= 1e-5)`);
      };
      compare(result.keypoints, reference.keypoints, "the drawn keypoints vs the reference's:");
      if (s.multi) {
        const n = 17 * 3;
        const want = [];
        for (let p = 0; p < s.multi.max_poses; p++) want.push(...Array.from({ length: 17 }, (_, k) => reference.poses.slice(p * n + 3 * k, p * n + 3 * k + 3)));
        const got = result.poses.flatMap((p) => p.keypoints);
        compare(got, want, "the poses vs the reference's:");
        const scoreErr = Math.max(...result.poses.map((p, i) => Math.abs(p.score - reference.pose_scores[i])));
        const found = result.poses.filter((p) => p.score >= 0).length;
        check(found >= 1 && scoreErr <= 1e-5, `${label}: ${found} pose(s) found, pose scores within ${scoreErr.toExponential(1)} of the reference's`);
      }
      if (label === "--poses 3") await page.screenshot({ path: path.join(out, "page-poses.png"), fullPage: true });
    }
    // The page as a newcomer sees it, for docs/web-page.md: defaults, run, drawn.
    await page.evaluate(async (b64) => {
      await posefixPage.setModel(Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)), "posenet-mobilenet075-257.onnx");
      posefixPage.setOptions({});
      await posefixPage.rewrite();
      await posefixPage.run();
    }, model.toString("base64"));
  }

  // 5. The saving.
  if (measure) {
    log(`measuring: ${frames} frames, sizes ${sizes}, backends ${backends}`);
    const rows = await page.evaluate(async (frames, sizes, backends, warmup) => {
      posefixPage.setOptions({});
      await posefixPage.rewrite();
      return await posefixPage.measure({ frames, sizes, backends, warmup });
    }, frames, sizes, backends, warmup);
    fs.writeFileSync(path.join(out, "saving.json"), JSON.stringify(rows, null, 2));
    for (const r of rows) {
      log(`${r.backend} ${r.size}: original ${r.original_ms.toFixed(2)} ms, ${r.original_bytes} B; rewritten ${r.rewritten_ms.toFixed(2)} ms, ${r.rewritten_bytes} B; time ${r.time_ratio.toFixed(2)}x, bytes ${r.bytes_ratio.toFixed(0)}x`);
      check(r.rewritten_bytes < r.original_bytes, `${r.backend} ${r.size}: the rewritten model reads back fewer bytes`);
    }
  }
  await page.screenshot({ path: path.join(out, "page.png"), fullPage: true });

  // 6. Without WebGPU (a browser started without its flags), the page falls back to WebGL; without
  // WebGL either (a browser with it disabled), to wasm.
  if (!measureOnly) {
    const withoutWebGpu = launchOptions.args.filter((a) => !WEBGPU_FLAGS.includes(a));
    const fallbacks = [
      ["without WebGPU", withoutWebGpu, "webgl", /^WebGPU failed \(no WebGPU adapter\); ran on WebGL$/],
      // Without SwiftShader too: with it, an OffscreenCanvas still gets WebGL 2 (Chromium 156).
      ["without WebGPU and WebGL", [...withoutWebGpu.filter((a) => !/swiftshader/.test(a)), "--disable-gpu",
        "--disable-software-rasterizer", "--disable-webgl", "--disable-3d-apis"], "wasm",
        /^WebGPU failed \(.*\); WebGL failed \(.*\); ran on wasm$/],
    ];
    for (const [what, args, want, why] of fallbacks) {
      const profile2 = fs.mkdtempSync(path.join(os.tmpdir(), "posefix-web-chromium-"));
      const other = await puppeteer.launch({ ...launchOptions, userDataDir: profile2, args });
      try {
        const p2 = await other.newPage();
        await p2.goto(`${origin}/?nomeasure`, { waitUntil: "load" });
        await p2.waitForFunction("window.posefixPage && (window.posefixPage.ready || window.posefixPage.failed)", { timeout: 300_000, polling: 500 });
        const r = await p2.evaluate(() => ({ failed: !!posefixPage.failed, backend: posefixPage.result?.backend,
          fallback: posefixPage.result?.fallback, n: posefixPage.result?.keypoints.length, status: document.getElementById("runStatus").textContent }));
        check(!r.failed && r.backend === want && why.test(r.fallback || "") && r.n === 17,
          `${what} the page falls back to ${want} and draws 17 keypoints (${r.status})`);
      } finally {
        await other.close().catch(() => {});
        fs.rmSync(profile2, { recursive: true, force: true });
      }
    }
  }
} catch (e) {
  fail(`the test stopped: ${e && e.stack ? e.stack : e}`);
} finally {
  await cleanup();
}
log(failures ? `${failures} check(s) failed` : "all checks passed");
process.exit(failures ? 1 : 0);
