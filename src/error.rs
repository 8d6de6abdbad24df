//! Typed errors of the library. A variant for each thing a caller may tell apart; every message is
//! one line naming the file, tensor or node it is about. The binary prints it and exits with code 2.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::contract::Layout;
use crate::profiles::schema::{Violation, PORTABLE};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{action} {path}: {cause}", path = .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        // Not `source`: the message already ends with it, and a chain would say it twice.
        cause: std::io::Error,
    },

    /// The bytes are not a usable ONNX model: they do not decode, or break ONNX's own rules.
    #[error("{}{reason}", match path { Some(p) => format!("{} is not a valid ONNX model: ", p.display()), None => "the model is not valid ONNX: ".to_string() })]
    InvalidModel { path: Option<PathBuf>, reason: Invalid },

    /// The model's default-domain opset is one the decoders are not emitted for (`None`: it
    /// imports none).
    #[error("{}", opset_text(*.found, *.supported))]
    Opset { found: Option<i64>, supported: (i64, i64) },

    /// A valid model this tool does not handle (external data, over protobuf's limit, shapes too
    /// large for a pose model, heads of another type).
    #[error("{0}")]
    Unsupported(String),

    /// No pair of outputs reads as heatmaps and offsets.
    #[error("{reason}")]
    HeadsNotFound { reason: String },

    /// Several pairs of outputs read as heads; the flags that settle it are in the message.
    #[error("the pose heads are ambiguous; outputs: {outputs}; choose with one of: {}", candidates_text(.candidates))]
    HeadsAmbiguous { outputs: String, candidates: Vec<HeadCandidate> },

    /// The model already carries an onnx-posefix decoder.
    #[error("the model already has an onnx-posefix decoder; rewrite the original model instead")]
    AlreadyDecoded,

    /// Arguments that contradict each other or the model.
    #[error("{0}")]
    Usage(String),

    /// The decoder would break rules of the target runtime profile.
    #[error("{}", target_text(.profile, .violations))]
    Target { profile: String, violations: Vec<Violation> },

    /// tract could not load, infer or run a model.
    #[error("{0}")]
    Tract(String),

    /// An error about one of two models (`ORIGINAL`, `REWRITTEN`).
    #[error("{model}: {source}")]
    About { model: &'static str, source: Box<Error> },

    /// A bug of this tool.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why bytes are not a usable ONNX model.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("the file is empty")]
    Empty,
    #[error("it is a directory")]
    Directory,
    #[error("protobuf decoding failed ({0}); is the file truncated?")]
    Decoding(String),
    #[error("no IR version (not an ONNX ModelProto)")]
    NoIrVersion,
    #[error("the model has no graph")]
    NoGraph,
    #[error("the graph has no outputs")]
    NoOutputs,
    #[error("the graph has no nodes")]
    NoNodes,
    /// An initializer whose data does not match its dims and type.
    #[error("{0}")]
    Initializer(String),
    /// A rule of ONNX graphs broken (see [`crate::model::validate`]).
    #[error("{0}")]
    Graph(String),
}

/// One reading of two outputs as heatmaps and offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeadCandidate {
    pub heatmaps: String,
    pub offsets: String,
    pub layout: Layout,
}

impl fmt::Display for HeadCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--heatmaps {} --offsets {} ({})", self.heatmaps, self.offsets, self.layout)
    }
}

fn candidates_text(candidates: &[HeadCandidate]) -> String {
    candidates.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(" | ")
}

fn opset_text(found: Option<i64>, (min, max): (i64, i64)) -> String {
    match found {
        None => "the model imports no default-domain (ai.onnx) opset".to_string(),
        Some(opset) => format!(
            "the model uses opset {opset}; onnx-posefix emits opsets {min} to {max} \
             (convert it first, e.g. with onnx.version_converter)"
        ),
    }
}

fn target_text(profile: &str, violations: &[Violation]) -> String {
    let lines: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
    let hint = if profile == PORTABLE {
        String::new()
    } else {
        format!(" (the default target {PORTABLE} leaves out the rules that depend on the model's opset or layout)")
    };
    format!("the decoder for this model would break target {profile}: {}{hint}", lines.join("; "))
}

impl Error {
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Io { action, path: path.to_path_buf(), cause: source }
    }

    pub fn invalid(reason: Invalid) -> Error {
        Error::InvalidModel { path: None, reason }
    }

    /// The same error, said of the model file at `path` where it is about the model's bytes.
    pub fn at(self, path: &Path) -> Error {
        match self {
            Error::InvalidModel { path: None, reason } => Error::InvalidModel { path: Some(path.into()), reason },
            other => other,
        }
    }

    /// The same error, said of `model` (`ORIGINAL` or `REWRITTEN`) where the message would not
    /// otherwise tell which.
    pub fn about(self, model: &'static str) -> Error {
        match self {
            e @ (Error::Tract(_) | Error::Usage(_) | Error::HeadsNotFound { .. } | Error::HeadsAmbiguous { .. }) => {
                Error::About { model, source: Box::new(e) }
            }
            other => other,
        }
    }

    /// The error under any [`Error::About`] wrapping.
    pub fn root(&self) -> &Error {
        match self {
            Error::About { source, .. } => source.root(),
            other => other,
        }
    }
}

/// A name from a model as it may appear in a one-line message: as is when it is plain, quoted
/// and escaped when it is empty or holds control characters or line breaks (names come from
/// untrusted bytes; a message must stay one line).
pub fn printable(name: &str) -> std::borrow::Cow<'_, str> {
    if name.is_empty() || name.chars().any(|c| c.is_control() || (c.is_whitespace() && c != ' ')) {
        format!("{name:?}").into()
    } else {
        name.into()
    }
}

/// An error and its causes on one line, outermost first, each cause once (a message that already
/// ends with its cause would repeat it), whitespace runs (line breaks in a hostile model's names
/// included) made single spaces.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(error);
    while let Some(e) = cause {
        let text = e.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = e.source();
    }
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_prefixes_the_model_and_root_sees_through_it() {
        let e = Error::Usage("--stride must be positive".into()).about("REWRITTEN");
        assert_eq!(e.to_string(), "REWRITTEN: --stride must be positive");
        assert!(matches!(e.root(), Error::Usage(_)));
        // Errors that name their file already are left as they are.
        let io = Error::io("cannot read", Path::new("m.onnx"), std::io::ErrorKind::NotFound.into()).about("ORIGINAL");
        assert!(matches!(io, Error::Io { .. }), "{io}");
        assert!(Error::invalid(Invalid::Empty)
            .at(Path::new("m.onnx"))
            .to_string()
            .starts_with("m.onnx is not a valid"));
    }
}
