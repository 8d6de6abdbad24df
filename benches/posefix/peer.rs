//! The Python peer: `benchmarks/peer_rewrite.py` in a virtual environment holding the pinned
//! `benchmarks/requirements.txt`, made once under the scratch directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Peer {
    pub python: PathBuf,
    pub script: PathBuf,
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Peer {
    /// The venv at `dir`, (re)built when missing or made from other requirements. The base
    /// interpreter is `$PYTHON`, else `python3`.
    pub fn setup(repo: &Path, dir: &Path) -> Peer {
        let requirements = repo.join("benchmarks/requirements.txt");
        let wanted = fs::read_to_string(&requirements).expect("benchmarks/requirements.txt");
        let stamp = dir.join("requirements.txt");
        let python = dir.join("bin/python");
        if fs::read_to_string(&stamp).ok().as_deref() != Some(wanted.as_str()) || !python.exists() {
            eprintln!("setting up the Python peer in {} ...", dir.display());
            let _ = fs::remove_dir_all(dir);
            let base = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
            run(Command::new(base).args(["-m", "venv"]).arg(dir));
            run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "-r"]).arg(&requirements));
            fs::write(&stamp, wanted).expect("write the venv stamp");
        }
        Peer { python, script: repo.join("benchmarks/peer_rewrite.py") }
    }

    pub fn command(&self, model: &Path, decoder: &Path, out: &Path) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(&self.script).arg(model).arg(decoder).arg(out);
        cmd
    }

    /// `onnx.__version__` and the protobuf backend, for the report.
    pub fn describe(&self) -> String {
        let out = Command::new(&self.python)
            .args([
                "-c",
                "import onnx, google.protobuf as p; from google.protobuf.internal import api_implementation as a; \
                 print(f'onnx {onnx.__version__}, protobuf {p.__version__} ({a.Type()})')",
            ])
            .output()
            .expect("run the peer's python");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}
