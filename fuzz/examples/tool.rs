//! Corpus chores for the fuzz targets (`cargo run --release --example tool -- ...`).
//!
//! - `seed`: writes the seed corpora: every synthetic model of `synthetic::matrix()` and the real
//!   model for `rewrite_bytes`, one single-byte case per synthetic spec for `rewrite_mutated`.
//! - `export TARGET FILE... DIR`: writes each fuzzer input as the model it stands for,
//!   `DIR/<stem>.onnx`, plus `DIR/<stem>.args` with the options when they are not the defaults;
//!   that is the form of `fuzz/regressions/`, which `tests/it/hostile.rs` replays.
//! - `replay DIR`: runs every `.onnx` of DIR as the test does and prints each outcome.
//! - `show FILE...`: prints the `rewrite_mutated` cases the files decode to.
//! - `pick TARGET FILE... DIR`: exports, like `export`, the smallest input of each distinct
//!   outcome (the opening words of the message, names and numbers blurred): one regression per path
//!   through the code rather than thousands of near-duplicates. Inputs that break the contract
//!   go to `DIR/open/`.

use std::fs;
use std::path::{Path, PathBuf};

use arbitrary::{Arbitrary, Unstructured};
use onnx_posefix::onnx_protobuf::Message;
use onnx_posefix::rewrite::RewriteOptions;
use onnx_posefix::testing::synthetic;
use onnx_posefix_fuzz::harness::{self, Outcome};
use onnx_posefix_fuzz::mutate::Case;

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("seed") => seed(Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus")),
        Some("export") if args.len() >= 4 => {
            let (dir, files) = args[2..].split_last().expect("len >= 4");
            export(&args[1], files, Path::new(dir))
        }
        Some("replay") if args.len() == 2 => replay(Path::new(&args[1])),
        Some("show") if args.len() >= 2 => show(&args[1..]),
        Some("pick") if args.len() >= 4 => {
            let (dir, files) = args[2..].split_last().expect("len >= 4");
            pick(&args[1], files, Path::new(dir))
        }
        _ => Err(concat!(
            "usage: tool seed | export TARGET FILE... DIR | replay DIR | show FILE... | pick TARGET FILE... DIR",
            " (TARGET: rewrite_bytes or rewrite_mutated)"
        )
        .into()),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), String> {
    fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn seed(corpus: PathBuf) -> Result<(), String> {
    let bytes_dir = corpus.join("rewrite_bytes");
    let mutated_dir = corpus.join("rewrite_mutated");
    for dir in [&bytes_dir, &mutated_dir] {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    for (i, spec) in synthetic::matrix().iter().enumerate() {
        let model = synthetic::generate(spec).write_to_bytes().map_err(|e| e.to_string())?;
        write(&bytes_dir.join(format!("{}.onnx", spec.label())), &model)?;
        write(&mutated_dir.join(format!("spec{i:02}")), &[i as u8])?;
    }
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/posenet-mobilenet075-257.onnx");
    let real_bytes = fs::read(&real).map_err(|e| format!("{}: {e}", real.display()))?;
    write(&bytes_dir.join("posenet-mobilenet075-257.onnx"), &real_bytes)?;
    println!("seeded {} and {}", bytes_dir.display(), mutated_dir.display());
    Ok(())
}

fn export(target: &str, files: &[String], dir: &Path) -> Result<(), String> {
    fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for file in files {
        let path = Path::new(file);
        let input = fs::read(path).map_err(|e| format!("{file}: {e}"))?;
        let (model, options) = decode(target, &input).map_err(|e| format!("{file}: {e}"))?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("case");
        let stem: String = stem.chars().take(40).collect();
        write(&dir.join(format!("{stem}.onnx")), &model)?;
        let args = harness::options_to_args(&options);
        if !args.is_empty() {
            write(&dir.join(format!("{stem}.args")), args.as_bytes())?;
        }
    }
    Ok(())
}

/// The outcome of an input with the details that vary between inputs of one path blurred:
/// the model's names, shapes, numbers and quoted text, and all but the opening words.
fn outcome_class(model: &[u8], outcome: &Result<Outcome, String>) -> String {
    let mut text = match outcome {
        Ok(Outcome::NotAModel(e)) => format!("not a model: {e}"),
        Ok(Outcome::Refused(e)) => format!("refused: {e}"),
        Ok(Outcome::Rewritten(r)) => {
            format!("rewritten: {} {} pruned {}", r.provenance().settings.layout, r.provenance().settings.scores, r.nodes_pruned() > 0)
        }
        Err(violation) => format!("VIOLATION: {violation}"),
    };
    // Past the first clause a refusal lists the model's particulars (outputs, shapes).
    text = text.split("; outputs:").next().unwrap_or_default().to_string();
    if let Ok(proto) = onnx_posefix::model::io::parse_model(model) {
        let g = proto.graph.as_ref().expect("parse_model checks the graph");
        let mut names: Vec<&str> = g
            .node
            .iter()
            .flat_map(|n| n.input.iter().chain(&n.output).chain([&n.name]).map(String::as_str))
            .chain(g.initializer.iter().map(|t| t.name.as_str()))
            .chain(g.input.iter().chain(&g.output).chain(&g.value_info).map(|v| v.name.as_str()))
            .filter(|n| n.len() > 1)
            .collect();
        names.sort_by_key(|n| std::cmp::Reverse(n.len()));
        for name in names {
            text = text.replace(name, "~");
        }
    }
    let mut class = String::new();
    let (mut quoted, mut bracketed) = (false, 0);
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            _ if quoted => {}
            '[' => bracketed += 1,
            ']' => {
                bracketed -= 1;
                class.push_str("[..]");
            }
            _ if bracketed > 0 => {}
            '0'..='9' if class.ends_with('#') => {}
            '0'..='9' => class.push('#'),
            _ => class.push(c),
        }
    }
    // The opening words tell the path; for a panic caught inside tract, so does its site.
    let site = text.rfind(" at tract-").map(|at| text[at..].split(')').next().unwrap_or_default().to_string());
    class.chars().take(60).collect::<String>() + &site.unwrap_or_default()
}

fn pick(target: &str, files: &[String], dir: &Path) -> Result<(), String> {
    let mut best: std::collections::BTreeMap<String, (usize, String)> = Default::default();
    for file in files {
        let input = fs::read(file).map_err(|e| format!("{file}: {e}"))?;
        let (model, options) = decode(target, &input).map_err(|e| format!("{file}: {e}"))?;
        let outcome = std::panic::catch_unwind(|| harness::exercise(&model, &options)).unwrap_or_else(|payload| {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()));
            Err(format!("PANIC: {}", message.unwrap_or_default()))
        });
        let class = outcome_class(&model, &outcome);
        let size = model.len();
        if best.get(&class).is_none_or(|(s, _)| size < *s) {
            best.insert(class, (size, file.clone()));
        }
    }
    for (class, (size, file)) in &best {
        println!("{size:>7}  {class}");
        // Open findings go apart: the test replays the folder itself strictly.
        let dir = if class.starts_with("VIOLATION") { dir.join("open") } else { dir.to_path_buf() };
        export(target, std::slice::from_ref(file), &dir)?;
    }
    println!("{} classes", best.len());
    Ok(())
}

fn decode(target: &str, input: &[u8]) -> Result<(Vec<u8>, RewriteOptions), String> {
    match target {
        "rewrite_bytes" => Ok((input.to_vec(), RewriteOptions::default())),
        "rewrite_mutated" => {
            let case = Case::arbitrary_take_rest(Unstructured::new(input)).map_err(|e| e.to_string())?;
            Ok((case.bytes(), case.options()))
        }
        other => Err(format!("unknown target {other}")),
    }
}

fn show(files: &[String]) -> Result<(), String> {
    for file in files {
        let input = fs::read(file).map_err(|e| format!("{file}: {e}"))?;
        let case = Case::arbitrary_take_rest(Unstructured::new(&input)).map_err(|e| format!("{file}: {e}"))?;
        println!("{file}: {case:?}");
    }
    Ok(())
}

fn replay(dir: &Path) -> Result<(), String> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "onnx"))
        .collect();
    entries.sort();
    for path in entries {
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let args = fs::read_to_string(path.with_extension("args")).unwrap_or_default();
        let options = harness::options_from_args(&args)?;
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        match harness::exercise(&bytes, &options) {
            Ok(Outcome::NotAModel(e)) => println!("{name}: not a model: {e}"),
            Ok(Outcome::Refused(e)) => println!("{name}: refused: {e}"),
            Ok(Outcome::Rewritten(r)) => println!("{name}: rewritten ({} nodes added)", r.nodes_added()),
            Err(violation) => println!("{name}: CONTRACT VIOLATED: {violation}"),
        }
    }
    Ok(())
}
