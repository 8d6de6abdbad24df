//! onnx-posefix's in-memory path for the browser page: a model's bytes and the page's choices as
//! command-line flags in, the rewritten model's bytes, the CLI's summary line and the
//! inspection out (or the CLI's one error line). Everything is the library's: the flags are parsed
//! by [`onnx_posefix::cli::RewriteArgs`], the model read by [`LoadedModel::from_bytes`], rewritten
//! by [`onnx_posefix::rewrite`] and encoded by [`onnx_posefix::Rewritten::to_bytes`], as the CLI
//! does, so the bytes are the CLI's (web/test checks it).
//!
//! The ABI is plain `extern "C"` over the module's memory (web/posefix.mjs is the other side):
//! the page allocates buffers with [`posefix_alloc`], writes the model and a JSON request into
//! them, calls [`posefix_inspect`] or [`posefix_rewrite`], and reads the JSON reply (and the
//! model) from [`posefix_reply_ptr`] / [`posefix_model_ptr`]. A panic aborts the instance
//! (wasm32 has no unwinding); its message is kept first for [`posefix_panic_ptr`], and the page
//! starts a fresh instance.

use std::cell::RefCell;
use std::path::Path;

use clap::Parser;
use onnx_posefix::cli::RewriteArgs;
use onnx_posefix::{inspect, rewrite, LoadedModel};
use onnx_posefix::{Preprocess, KEYPOINT_NAMES, SKELETON};
use serde::Deserialize;
use serde_json::json;

/// The page's options, as the CLI's flags: the rewrite's own, and `--preprocess`, which the CLI
/// takes among the verification flags and which `--pixels` prepends.
#[derive(Parser, Debug)]
#[command(name = "onnx-posefix", no_binary_name = true, disable_help_flag = true, rename_all = "kebab-case")]
struct PageArgs {
    #[command(flatten)]
    rewrite: RewriteArgs,
    #[arg(long, value_enum)]
    preprocess: Option<Preprocess>,
}

#[derive(Deserialize)]
struct Request {
    /// The model's file name, as the CLI's IN: error lines name it.
    name: String,
    /// The CLI's flags.
    #[serde(default)]
    args: Vec<String>,
    /// The rewritten model's file name, as the CLI's OUT: the summary line names it.
    #[serde(default)]
    out: String,
}

thread_local! {
    static REPLY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static MODEL: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static PANIC: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The CLI's error line: `error: ` and the message with its causes, on one line (the binary
/// prints anyhow's `{:#}`, which joins the source chain with `: `).
fn error_line(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    format!("error: {}", text.replace(['\n', '\r'], " "))
}

/// clap's error as the CLI shows it, its first paragraph on one line (less the tip, usage and
/// help paragraphs that follow).
fn usage_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let first: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
    if first.is_empty() {
        "error: bad arguments".to_string()
    } else {
        first.join(" ")
    }
}

fn parse_request(request: &[u8]) -> Result<(Request, PageArgs), String> {
    let request: Request = serde_json::from_slice(request)
        .map_err(|e| format!("error: internal error: bad request from the page: {e}"))?;
    let args = PageArgs::try_parse_from(&request.args).map_err(|e| usage_line(&e))?;
    if args.preprocess.is_some() && args.rewrite.pixels.is_none() {
        // What the binary says of a verification flag without --verify (the page does not verify).
        return Err("error: --preprocess only applies with --verify (or the verify subcommand)".to_string());
    }
    Ok((request, args))
}

fn inspect_reply(model: &[u8], request: &[u8]) -> Result<serde_json::Value, String> {
    let (request, args) = parse_request(request)?;
    let model = LoadedModel::from_bytes(model.to_vec(), Path::new(&request.name)).map_err(|e| error_line(&e))?;
    let inspection = inspect(&model, None, &args.rewrite.input_shape).map_err(|e| error_line(&e))?;
    Ok(json!({ "ok": true, "text": inspection.to_string().trim_end(), "inspection": inspection }))
}

fn rewrite_reply(model: &[u8], request: &[u8]) -> Result<(serde_json::Value, Vec<u8>), String> {
    let (request, args) = parse_request(request)?;
    let options = args.rewrite.options(args.preprocess).map_err(|e| error_line(&e))?;
    let model = LoadedModel::from_bytes(model.to_vec(), Path::new(&request.name)).map_err(|e| error_line(&e))?;
    let rewritten = rewrite(&model, &options).map_err(|e| error_line(&e))?;
    let bytes = rewritten.to_bytes(&model).map_err(|e| error_line(&e))?;
    let reply = json!({
        "ok": true,
        "summary": rewritten.summary(Path::new(&request.out)),
        "notes": rewritten.notes().iter().map(|n| format!("note: {n}")).collect::<Vec<_>>(),
        "provenance": rewritten.provenance().to_metadata(),
        "grid": [rewritten.heads().grid.0, rewritten.heads().grid.1],
    });
    Ok((reply, bytes))
}

fn set_reply(value: serde_json::Value) {
    REPLY.with(|r| *r.borrow_mut() = value.to_string().into_bytes());
}

/// # Safety
/// `ptr..ptr+len` must be a live allocation of this module's memory (or `len` 0).
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> &'a [u8] {
    if len == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(ptr, len)
    }
}

/// Keeps a panic's message for [`posefix_panic_ptr`]: the instance aborts right after.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let line = format!("error: internal error: {info}").replace(['\n', '\r'], " ");
            PANIC.with(|p| {
                if let Ok(mut p) = p.try_borrow_mut() {
                    *p = line.into_bytes();
                }
            });
        }))
    });
}

/// A buffer of `len` bytes for the page to write into; freed with [`posefix_free`].
#[no_mangle]
pub extern "C" fn posefix_alloc(len: usize) -> *mut u8 {
    install_panic_hook();
    let mut buf = vec![0u8; len].into_boxed_slice();
    let ptr = buf.as_mut_ptr();
    std::mem::forget(buf);
    ptr
}

/// # Safety
/// `ptr` and `len` must come from one [`posefix_alloc`] call, freed once.
#[no_mangle]
pub unsafe extern "C" fn posefix_free(ptr: *mut u8, len: usize) {
    drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)));
}

/// What `inspect MODEL [--input-shape ...]` prints, and its JSON. Returns 0, or 1 when the reply
/// is an error line. The request is `{"name", "args"}`.
///
/// # Safety
/// Both ranges must be live allocations of this module's memory.
#[no_mangle]
pub unsafe extern "C" fn posefix_inspect(model: *const u8, model_len: usize, req: *const u8, req_len: usize) -> u32 {
    install_panic_hook();
    match inspect_reply(bytes(model, model_len), bytes(req, req_len)) {
        Ok(reply) => {
            set_reply(reply);
            0
        }
        Err(line) => {
            set_reply(json!({ "ok": false, "error": line }));
            1
        }
    }
}

/// `onnx-posefix IN OUT ARGS...`: the rewritten model (at [`posefix_model_ptr`]) and the summary
/// line. Returns 0, or 1 when the reply is an error line. The request is `{"name", "args", "out"}`.
///
/// # Safety
/// Both ranges must be live allocations of this module's memory.
#[no_mangle]
pub unsafe extern "C" fn posefix_rewrite(model: *const u8, model_len: usize, req: *const u8, req_len: usize) -> u32 {
    install_panic_hook();
    MODEL.with(|m| m.borrow_mut().clear());
    match rewrite_reply(bytes(model, model_len), bytes(req, req_len)) {
        Ok((reply, out)) => {
            set_reply(reply);
            MODEL.with(|m| *m.borrow_mut() = out);
            0
        }
        Err(line) => {
            set_reply(json!({ "ok": false, "error": line }));
            1
        }
    }
}

/// [`onnx_posefix::redeclared_for_size`]: the model at [`posefix_model_ptr`]. Returns 0, or 1 with the error line.
///
/// # Safety
/// The range must be a live allocation of this module's memory.
#[no_mangle]
pub unsafe extern "C" fn posefix_resize(model: *const u8, model_len: usize, size: usize) -> u32 {
    install_panic_hook();
    match onnx_posefix::redeclared_for_size(bytes(model, model_len), size).map_err(|e| error_line(&e)) {
        Ok(out) => {
            MODEL.with(|m| *m.borrow_mut() = out);
            set_reply(json!({ "ok": true }));
            0
        }
        Err(line) => {
            set_reply(json!({ "ok": false, "error": line }));
            1
        }
    }
}

/// What the page draws with, from the library: keypoint names, skeleton edges, `--draw`'s
/// style, the version.
#[no_mangle]
pub extern "C" fn posefix_about() {
    set_reply(json!({
        "version": onnx_posefix::TOOL_VERSION,
        "keypoints": KEYPOINT_NAMES,
        "skeleton": SKELETON,
        "style": onnx_posefix::DRAW_STYLE,
        "profiles": onnx_posefix::PROFILE_NAMES,
    }));
}

#[no_mangle]
pub extern "C" fn posefix_reply_ptr() -> *const u8 {
    REPLY.with(|r| r.borrow().as_ptr())
}

#[no_mangle]
pub extern "C" fn posefix_reply_len() -> usize {
    REPLY.with(|r| r.borrow().len())
}

#[no_mangle]
pub extern "C" fn posefix_model_ptr() -> *const u8 {
    MODEL.with(|m| m.borrow().as_ptr())
}

#[no_mangle]
pub extern "C" fn posefix_model_len() -> usize {
    MODEL.with(|m| m.borrow().len())
}

/// The last panic's line (empty if none): read after a trap.
#[no_mangle]
pub extern "C" fn posefix_panic_ptr() -> *const u8 {
    PANIC.with(|p| p.borrow().as_ptr())
}

#[no_mangle]
pub extern "C" fn posefix_panic_len() -> usize {
    PANIC.with(|p| p.borrow().len())
}
