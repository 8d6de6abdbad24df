//! Typed errors of the library. Every message is one line naming the file, tensor or node it is
//! about; the binary prints it and exits with code 2.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}", path = .path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },

    /// The bytes are not a usable ONNX model.
    #[error("{path} is not a valid ONNX model: {reason}", path = .path.display())]
    InvalidModel { path: PathBuf, reason: String },

    /// A valid model this tool does not handle (old opset, external data, ...).
    #[error("{0}")]
    Unsupported(String),

    /// The pose heads could not be found or chosen.
    #[error("{0}")]
    Heads(String),

    /// The model already carries a posefix decoder.
    #[error("{0}")]
    AlreadyDecoded(String),

    /// Arguments that contradict each other or the model.
    #[error("{0}")]
    Usage(String),

    /// tract could not load, infer or run a model.
    #[error("{0}")]
    Tract(String),
}

impl Error {
    pub fn io(action: &'static str, path: &Path, source: std::io::Error) -> Error {
        Error::Io { action, path: path.to_path_buf(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
