//! Reading models from disk and writing them back whole or not at all.

use std::fs;
use std::io::Write;
use std::path::Path;

use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{Message, ModelProto};

use crate::error::{Error, Result};

/// The largest model protobuf can hold in one message; bigger models keep weights outside.
const PROTOBUF_LIMIT: u64 = 2 * 1024 * 1024 * 1024;

/// A model as read from disk: its parsed messages and the exact bytes they came from (tract reads
/// the bytes, so they are never re-serialized just to be inspected).
#[derive(Clone, Debug)]
pub struct LoadedModel {
    pub bytes: Vec<u8>,
    pub proto: ModelProto,
}

/// Reads and sanity-checks an ONNX model. Random bytes often decode as *some* protobuf message,
/// so beyond decoding this insists on a graph with outputs and a default-domain opset.
pub fn read_model(path: &Path) -> Result<LoadedModel> {
    let meta = fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
    if meta.is_dir() {
        return Err(Error::InvalidModel { path: path.into(), reason: "it is a directory".into() });
    }
    if meta.len() >= PROTOBUF_LIMIT {
        return Err(Error::Unsupported(format!(
            "{} is {} bytes, over protobuf's 2 GiB limit: models with external data are not supported yet",
            path.display(),
            meta.len()
        )));
    }
    let bytes = fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    let proto = parse_model(&bytes).map_err(|reason| Error::InvalidModel { path: path.into(), reason })?;
    if uses_external_data(&proto) {
        return Err(Error::Unsupported(format!(
            "{} keeps tensor data in external files: models with external data are not supported yet",
            path.display()
        )));
    }
    Ok(LoadedModel { bytes, proto })
}

/// Decodes and checks the bytes of a model; the error is the reason, without the path.
pub fn parse_model(bytes: &[u8]) -> std::result::Result<ModelProto, String> {
    if bytes.is_empty() {
        return Err("the file is empty".into());
    }
    let proto = ModelProto::parse_from_bytes(bytes)
        .map_err(|e| format!("protobuf decoding failed ({e}); is the file truncated?"))?;
    if proto.ir_version <= 0 {
        return Err("no IR version (not an ONNX ModelProto)".into());
    }
    let graph = proto.graph.as_ref().ok_or("the model has no graph")?;
    if graph.output.is_empty() {
        return Err("the graph has no outputs".into());
    }
    if graph.node.is_empty() {
        return Err("the graph has no nodes".into());
    }
    Ok(proto)
}

fn uses_external_data(proto: &ModelProto) -> bool {
    let Some(graph) = proto.graph.as_ref() else { return false };
    graph.initializer.iter().any(|t| {
        !t.external_data.is_empty() || t.data_location.enum_value() == Ok(DataLocation::EXTERNAL)
    })
}

/// True when both paths name the same existing file (hard links and `./a` vs `a` included).
pub fn same_file(a: &Path, b: &Path) -> bool {
    let same_path = match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    same_path || same_inode(a, b)
}

#[cfg(unix)]
fn same_inode(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_inode(_: &Path, _: &Path) -> bool {
    false
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, flushed, then
/// renamed over the target, so readers see the old file or the whole new one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.is_dir() {
        return Err(Error::io(
            "cannot write",
            path,
            std::io::Error::new(std::io::ErrorKind::IsADirectory, "it is a directory"),
        ));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".posefix-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(|e| Error::io("cannot write", path, e))?;
    tmp.write_all(bytes).map_err(|e| Error::io("cannot write", path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io("cannot write", path, e))?;
    tmp.persist(path).map_err(|e| Error::io("cannot write", path, e.error))?;
    Ok(())
}

/// Serializes a model (the one re-encoding step of a rewrite).
pub fn to_bytes(model: &ModelProto) -> Result<Vec<u8>> {
    model
        .write_to_bytes()
        .map_err(|e| Error::Unsupported(format!("cannot encode the rewritten model: {e}")))
}
