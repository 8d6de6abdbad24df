//! Reading models from disk and writing them back whole or not at all; or, on wasm32 (the browser
//! page), from bytes in memory only: the file-system half is built for native targets only.

use std::borrow::Cow;
#[cfg(not(target_arch = "wasm32"))]
use std::fs;
#[cfg(not(target_arch = "wasm32"))]
use std::io::Write;
use std::path::Path;

use onnx_protobuf::tensor_proto::DataLocation;
use onnx_protobuf::{GraphProto, Message, ModelProto};

use crate::error::{Error, Invalid, Result};
#[cfg(not(target_arch = "wasm32"))]
use crate::model::source::FileSource;
use crate::model::source::Source;
#[cfg(not(target_arch = "wasm32"))]
use crate::model::temporary::Temporary;
use crate::model::validate;
use crate::model::wire::{self, Piece};

/// The largest model protobuf can hold in one message; bigger models keep weights outside.
const PROTOBUF_LIMIT: u64 = 2 * 1024 * 1024 * 1024;

/// Initializer records larger than this are left out of a structure-only parse.
const STRUCTURE_MAX_INITIALIZER_BYTES: u64 = 4096;

/// A model as read from disk: its parsed messages and the exact bytes they came from (tract reads
/// the bytes, so they are never re-serialized just to be inspected).
///
/// After [`read_structure`], `proto` is the model's *structure*: initializers larger than 4 KiB
/// keep their name, type and dims but no data, which stays in `bytes`. Write such a model only
/// by splicing it with its bytes ([`crate::rewrite::Rewritten::to_bytes`]), which carries the
/// data over.
#[derive(Clone, Debug)]
pub struct LoadedModel {
    pub(crate) bytes: Vec<u8>,
    pub(crate) proto: ModelProto,
}

/// A model the rewrite can read: its parsed messages, and its bytes by position.
pub trait ModelSource {
    /// The parsed model; structure-only when weights were left out (see [`LoadedModel`]).
    fn proto(&self) -> &ModelProto;
    /// The model's bytes as they are on disk.
    fn source(&self) -> &dyn Source;
    /// All the model's bytes in memory (read from the file if they are not).
    fn bytes(&self) -> Result<Cow<'_, [u8]>>;
    /// Where the model's records lie in [`Self::source`]: walked on demand for bytes in
    /// memory, kept from opening for a file.
    fn records(&self) -> std::result::Result<Cow<'_, wire::ModelRecords>, wire::WireError> {
        wire::ModelRecords::read(self.source()).map(Cow::Owned)
    }

    /// Whether some initializer's data was left out of `proto`.
    fn weights_stripped(&self) -> bool {
        self.proto().graph.as_ref().is_some_and(|g| g.initializer.iter().any(|t| stripped_raw_len(t).is_some()))
    }
}

impl ModelSource for LoadedModel {
    fn proto(&self) -> &ModelProto {
        &self.proto
    }

    fn source(&self) -> &dyn Source {
        &self.bytes
    }

    fn bytes(&self) -> Result<Cow<'_, [u8]>> {
        Ok(Cow::Borrowed(&self.bytes))
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// A model file opened for rewriting: its structure parsed, its weights left in the file and
/// never read (the output copies them file to file).
#[derive(Debug)]
pub struct ModelFile {
    path: std::path::PathBuf,
    source: FileSource,
    records: wire::ModelRecords,
    pub proto: ModelProto,
}

#[cfg(not(target_arch = "wasm32"))]
impl ModelSource for ModelFile {
    fn proto(&self) -> &ModelProto {
        &self.proto
    }

    fn source(&self) -> &dyn Source {
        &self.source
    }

    fn bytes(&self) -> Result<Cow<'_, [u8]>> {
        let read = |e| Error::io("cannot read", &self.path, e);
        Ok(Cow::Owned(Source::read_range(&self.source, 0..self.source.len).map_err(read)?))
    }

    fn records(&self) -> std::result::Result<Cow<'_, wire::ModelRecords>, wire::WireError> {
        Ok(Cow::Borrowed(&self.records))
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Opens a model for rewriting: parses everything but the data of large initializers, reading
/// only those parts of the file.
pub fn open_structure(path: &Path) -> Result<ModelFile> {
    let meta = check_size(path)?;
    let file = fs::File::open(path).map_err(|e| Error::io("cannot read", path, e))?;
    let source = FileSource { file, len: meta.len() };
    let (proto, records) = structure_of(&source, Some(path)).map_err(|e| e.at(path))?;
    check_external_data(&proto, path)?;
    Ok(ModelFile { path: path.to_path_buf(), source, records, proto })
}

/// The structure of a model: its bytes without large initializer data, parsed and checked, and
/// where its records lie. A read error is said of `path`, when the bytes come from that file.
fn structure_of(src: &dyn Source, path: Option<&Path>) -> Result<(ModelProto, wire::ModelRecords)> {
    let wire_error = |e| match (e, path) {
        (wire::WireError::Io(e), Some(path)) => Error::io("cannot read", path, e),
        (e, _) => Error::invalid(Invalid::Decoding(e.to_string())),
    };
    let records = wire::ModelRecords::read(src).map_err(wire_error)?;
    if src.is_empty() {
        return Err(Error::invalid(Invalid::Empty));
    }
    let structure = wire::strip_weights(src, &records, STRUCTURE_MAX_INITIALIZER_BYTES).map_err(wire_error)?;
    let proto = parse_model(&structure)?;
    check_initializer_sizes(&proto)?;
    Ok((proto, records))
}

/// Bytes per element of the fixed-size ONNX types.
fn element_size(data_type: i32) -> Option<u64> {
    use onnx_protobuf::tensor_proto::DataType as T;
    use protobuf::Enum;
    Some(match T::from_i32(data_type)? {
        T::UINT8 | T::INT8 | T::BOOL => 1,
        T::UINT16 | T::INT16 | T::FLOAT16 | T::BFLOAT16 => 2,
        T::FLOAT | T::INT32 | T::UINT32 => 4,
        T::INT64 | T::UINT64 | T::DOUBLE => 8,
        _ => return None,
    })
}

/// Initializers must hold as much raw data as their dims and type declare. tract checks this
/// when it loads a model, but the rewrite's tract never sees the weights it left in the file.
fn check_initializer_sizes(proto: &ModelProto) -> Result<()> {
    let invalid = |what: String| Err(Error::invalid(Invalid::Initializer(what)));
    let Some(graph) = proto.graph.as_ref() else { return Ok(()) };
    for t in &graph.initializer {
        let raw_len = match stripped_raw_len(t) {
            Some(len) => len,
            None if !has_data(t) => {
                return invalid(format!("initializer {} declares dims {:?} but holds no data", t.name, t.dims));
            }
            None => (!t.raw_data.is_empty()).then_some(t.raw_data.len() as u64),
        };
        let (Some(raw_len), Some(size)) = (raw_len, element_size(t.data_type)) else { continue };
        let declared = t.dims.iter().try_fold(size, |acc, d| u64::try_from(*d).ok().and_then(|d| acc.checked_mul(d)));
        if declared != Some(raw_len) {
            return invalid(format!(
                "initializer {} declares dims {:?} ({} bytes) but holds {raw_len} bytes",
                t.name,
                t.dims,
                declared.map_or("too many".to_string(), |d| d.to_string())
            ));
        }
    }
    Ok(())
}

/// For an initializer whose data a structure-only parse left out: `Some(Some(n))` with the
/// byte length of its raw data, `Some(None)` when the data was in typed fields.
pub fn stripped_raw_len(t: &onnx_protobuf::TensorProto) -> Option<Option<u64>> {
    let mark = t.special_fields.unknown_fields().get(wire::STRIPPED_MARK)?;
    match mark {
        protobuf::UnknownValueRef::Varint(0) => Some(None),
        protobuf::UnknownValueRef::Varint(n) => Some(Some(n - 1)),
        _ => None,
    }
}

/// Whether a tensor carries its values (or is empty, or lives in external data).
pub fn has_data(t: &onnx_protobuf::TensorProto) -> bool {
    t.dims.contains(&0)
        || !t.raw_data.is_empty()
        || !t.float_data.is_empty()
        || !t.int32_data.is_empty()
        || !t.int64_data.is_empty()
        || !t.double_data.is_empty()
        || !t.uint64_data.is_empty()
        || !t.string_data.is_empty()
        || !t.external_data.is_empty()
}

#[cfg(not(target_arch = "wasm32"))]
/// Reads and sanity-checks an ONNX model, parsing all of it.
pub fn read_model(path: &Path) -> Result<LoadedModel> {
    read(path, parse_model)
}

#[cfg(not(target_arch = "wasm32"))]
/// Reads a model for rewriting: everything but the data of large initializers is parsed.
pub fn read_structure(path: &Path) -> Result<LoadedModel> {
    read(path, parse_structure)
}

/// Parses everything but the data of large initializers, with the checks of [`parse_model`].
pub fn parse_structure(bytes: &[u8]) -> Result<ModelProto> {
    structure_of(&bytes, None).map(|(proto, _)| proto)
}

/// Random bytes often decode as *some* protobuf message, so beyond decoding this insists on a
/// graph with nodes and outputs.
#[cfg(not(target_arch = "wasm32"))]
fn read(path: &Path, parse: fn(&[u8]) -> Result<ModelProto>) -> Result<LoadedModel> {
    check_size(path)?;
    let bytes = fs::read(path).map_err(|e| Error::io("cannot read", path, e))?;
    LoadedModel::parse(bytes, path, parse)
}

impl LoadedModel {
    /// The parsed model (structure-only after [`read_structure`]).
    pub fn proto(&self) -> &ModelProto {
        &self.proto
    }

    /// The model's bytes, as read.
    pub fn file_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn into_proto(self) -> ModelProto {
        self.proto
    }

    /// A model from bytes and a parse of them, unchecked: for tests that need a particular parse
    /// (a full one, or one [`model::validate`](crate::model::validate) would refuse).
    #[cfg(feature = "testing")]
    pub fn from_parts(bytes: Vec<u8>, proto: ModelProto) -> LoadedModel {
        LoadedModel { bytes, proto }
    }

    /// A model from bytes already in memory (a file given to the browser page), structure-only
    /// and checked as [`read_structure`] reads and checks a file; errors name the file as `name`.
    pub fn from_bytes(bytes: Vec<u8>, name: &Path) -> Result<LoadedModel> {
        check_limit(bytes.len() as u64, name)?;
        LoadedModel::parse(bytes, name, parse_structure)
    }

    fn parse(bytes: Vec<u8>, path: &Path, parse: fn(&[u8]) -> Result<ModelProto>) -> Result<LoadedModel> {
        let proto = parse(&bytes).map_err(|e| e.at(path))?;
        check_external_data(&proto, path)?;
        Ok(LoadedModel { bytes, proto })
    }
}

/// A readable file under protobuf's 2 GiB limit.
#[cfg(not(target_arch = "wasm32"))]
fn check_size(path: &Path) -> Result<fs::Metadata> {
    let meta = fs::metadata(path).map_err(|e| Error::io("cannot read", path, e))?;
    if meta.is_dir() {
        return Err(Error::invalid(Invalid::Directory).at(path));
    }
    check_limit(meta.len(), path)?;
    Ok(meta)
}

fn check_limit(len: u64, path: &Path) -> Result<()> {
    if len >= PROTOBUF_LIMIT {
        return Err(Error::Unsupported(format!(
            "{} is {len} bytes, over protobuf's 2 GiB limit: models with external data are not supported yet",
            path.display(),
        )));
    }
    Ok(())
}

fn check_external_data(proto: &ModelProto, path: &Path) -> Result<()> {
    if uses_external_data(proto) {
        return Err(Error::Unsupported(format!(
            "{} keeps tensor data in external files: models with external data are not supported yet",
            path.display()
        )));
    }
    Ok(())
}

/// Decodes the bytes of a model and validates it ([`validate::model`]); errors name no path
/// ([`Error::at`] adds it).
pub fn parse_model(bytes: &[u8]) -> Result<ModelProto> {
    let invalid = |reason| Err(Error::invalid(reason));
    if bytes.is_empty() {
        return invalid(Invalid::Empty);
    }
    let proto = ModelProto::parse_from_bytes(bytes).map_err(|e| Error::invalid(Invalid::Decoding(e.to_string())))?;
    if proto.ir_version <= 0 {
        return invalid(Invalid::NoIrVersion);
    }
    let Some(graph) = proto.graph.as_ref() else { return invalid(Invalid::NoGraph) };
    if graph.output.is_empty() {
        return invalid(Invalid::NoOutputs);
    }
    if graph.node.is_empty() {
        return invalid(Invalid::NoNodes);
    }
    validate::model(&proto)?;
    Ok(proto)
}

fn uses_external_data(proto: &ModelProto) -> bool {
    let Some(graph) = proto.graph.as_ref() else { return false };
    graph
        .initializer
        .iter()
        .any(|t| !t.external_data.is_empty() || t.data_location.enum_value() == Ok(DataLocation::EXTERNAL))
}

#[cfg(not(target_arch = "wasm32"))]
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

#[cfg(not(any(unix, target_arch = "wasm32")))]
fn same_inode(_: &Path, _: &Path) -> bool {
    false
}

/// Whether the output is flushed to the disk before it replaces the target. Either way it is
/// written to a temporary file and renamed over the target, so it appears whole or not at all,
/// even when the tool fails or is killed midway.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Leave the flush to the OS, as `cp` and `onnx.save` do. After a power loss in the seconds
    /// that follow, the file system may hold an empty or partial OUT.
    #[default]
    Cached,
    /// `fsync` the file before the rename and the directory after it: once the tool returns,
    /// OUT survives a power loss. Costs the time to write the whole file through to the disk.
    Synced,
}

#[cfg(not(target_arch = "wasm32"))]
/// Writes `bytes` to `path` atomically: a temporary file in the same directory, renamed over the
/// target, so readers see the old file or the whole new one.
pub fn write_atomically(path: &Path, bytes: &[u8], durability: Durability) -> Result<()> {
    write_with(path, durability, |file| file.write_all(bytes))
}

#[cfg(not(target_arch = "wasm32"))]
fn write_with(
    path: &Path,
    durability: Durability,
    fill: impl FnOnce(&mut fs::File) -> std::io::Result<()>,
) -> Result<()> {
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
    let failed = |e| Error::io("cannot write", path, e);
    // The directory first: tempfile's errors name its temporary file, not the user's.
    fs::metadata(dir).map_err(failed)?;
    let replaced = fs::metadata(path).ok().filter(|m| m.is_file());
    let mut tmp = Temporary::create_in(dir)
        .map_err(|e| failed(e.raw_os_error().map_or_else(|| e.kind().into(), std::io::Error::from_raw_os_error)))?;
    fill(tmp.file_mut()).map_err(failed)?;
    if let Some(old) = &replaced {
        keep_owner_and_mode(tmp.file(), old).map_err(failed)?;
    }
    if durability == Durability::Synced {
        tmp.file().sync_all().map_err(failed)?;
    }
    tmp.persist(path).map_err(failed)?;
    if durability == Durability::Synced {
        sync_dir(dir).map_err(failed)?;
    }
    Ok(())
}

/// Gives the file that replaces another that one's mode, and its owner and group where the
/// process may set them (root may; a user may keep a group they belong to).
#[cfg(unix)]
fn keep_owner_and_mode(file: &fs::File, old: &fs::Metadata) -> std::io::Result<()> {
    use std::os::unix::fs::{fchown, MetadataExt};
    if fchown(file, Some(old.uid()), Some(old.gid())).is_err() {
        let _ = fchown(file, None, Some(old.gid()));
    }
    // After the chown, which may clear set-id bits.
    file.set_permissions(old.permissions())
}

#[cfg(not(any(unix, target_arch = "wasm32")))]
fn keep_owner_and_mode(file: &fs::File, old: &fs::Metadata) -> std::io::Result<()> {
    file.set_permissions(old.permissions())
}

/// Makes a rename in `dir` durable.
#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(any(unix, target_arch = "wasm32")))]
fn sync_dir(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Serializes a fully parsed model. For a model read with [`read_structure`] use
/// [`encode_edited`], which carries the weights over.
pub fn to_bytes(model: &ModelProto) -> Result<Vec<u8>> {
    model.write_to_bytes().map_err(|e| Error::Internal(format!("cannot encode the rewritten model: {e}")))
}

/// `model` (the bytes of a fully stored PoseNet) declared for a `size`x`size` image, its rank-4
/// outputs for the grid that gives at the same output stride: PoseNet's convolutions work at any
/// size, so the browser page times a model exported at 257 at 513 too.
pub fn redeclared_for_size(model: &[u8], size: usize) -> Result<Vec<u8>> {
    use crate::model::proto::{declared_tensor, set_declared_shape, Dim};
    let fail = |why: &str| Error::Unsupported(format!("cannot declare the model for {size}x{size}: {why}"));
    let mut proto = parse_model(model)?;
    let graph = proto.graph.as_mut().ok_or_else(|| fail("no graph"))?;
    let fixed = |dims: &[Dim]| -> Option<Vec<i64>> {
        dims.iter().map(|d| if let Dim::Fixed(v) = d { Some(*v) } else { None }).collect()
    };
    let input = graph.input.first_mut().ok_or_else(|| fail("no input"))?;
    let dims = declared_tensor(input).and_then(|(_, d)| d).and_then(|d| fixed(&d)).filter(|d| d.len() == 4);
    let dims = dims.ok_or_else(|| fail("the first input is not a fixed rank-4 tensor"))?;
    // NCHW when the channels come second (1 or 3 of them), NHWC otherwise.
    let (h, w) = if matches!(dims[1], 1 | 3) { (2, 3) } else { (1, 2) };
    let mut new = dims.clone();
    (new[h], new[w]) = (size as i64, size as i64);
    set_declared_shape(input, &new.iter().map(|&v| Dim::Fixed(v)).collect::<Vec<_>>());
    for out in &mut graph.output {
        let Some(d) = declared_tensor(out).and_then(|(_, d)| d).and_then(|d| fixed(&d)).filter(|d| d.len() == 4) else {
            continue;
        };
        let stride = if d[h] > 1 { (dims[h] - 1) / (d[h] - 1) } else { return Err(fail("a 1-cell grid")) };
        let mut g = d.clone();
        (g[h], g[w]) = ((size as i64 - 1) / stride + 1, (size as i64 - 1) / stride + 1);
        set_declared_shape(out, &g.iter().map(|&v| Dim::Fixed(v)).collect::<Vec<_>>());
    }
    to_bytes(&proto)
}

/// The fields of a model besides its graph and metadata, which an edit must leave alone.
fn same_outside_graph_and_metadata(a: &ModelProto, b: &ModelProto) -> bool {
    a.ir_version == b.ir_version
        && a.opset_import == b.opset_import
        && a.producer_name == b.producer_name
        && a.producer_version == b.producer_version
        && a.domain == b.domain
        && a.model_version == b.model_version
        && a.doc_string == b.doc_string
        && a.training_info == b.training_info
        && a.functions == b.functions
        && a.special_fields == b.special_fields
}

fn same_graph_scalars(a: &GraphProto, b: &GraphProto) -> bool {
    a.name == b.name
        && a.doc_string == b.doc_string
        && a.quantization_annotation == b.quantization_annotation
        && a.metadata_props == b.metadata_props
        && a.special_fields == b.special_fields
}

/// Encodes `edited`, a copy of `original`'s proto whose graph lists and metadata were edited by
/// removing entries, changing value-infos in place and appending, by splicing over the original
/// bytes: unchanged records (the weights above all) are carried over verbatim, as byte ranges.
pub fn encode_edited(original: &dyn ModelSource, edited: &ModelProto) -> Result<Vec<Piece>> {
    let internal = |what: &str| Error::Internal(format!("while encoding the output: {what}"));
    let wire_error = |e: wire::WireError| Error::Internal(format!("cannot re-encode the model: {e}"));
    let before = original.proto();
    if !same_outside_graph_and_metadata(before, edited) {
        return Err(internal("fields outside the graph changed"));
    }
    let (Some(g0), Some(g1)) = (before.graph.as_ref(), edited.graph.as_ref()) else {
        return Err(internal("graph missing"));
    };
    if !same_graph_scalars(g0, g1) {
        return Err(internal("graph fields other than lists changed"));
    }
    let by_name = |a: &onnx_protobuf::ValueInfoProto, b: &onnx_protobuf::ValueInfoProto| a.name == b.name;
    // Nodes and tensors are never changed in place: any difference is a removal plus an append.
    fn never<M>(_: &M, _: &M) -> bool {
        false
    }
    let mut graph_plans = vec![
        (wire::GRAPH_NODE, wire::plan_list(wire::GRAPH_NODE, &g0.node, &g1.node, never)),
        (wire::GRAPH_INITIALIZER, wire::plan_list(wire::GRAPH_INITIALIZER, &g0.initializer, &g1.initializer, never)),
        (wire::GRAPH_INPUT, wire::plan_list(wire::GRAPH_INPUT, &g0.input, &g1.input, by_name)),
        (wire::GRAPH_OUTPUT, wire::plan_list(wire::GRAPH_OUTPUT, &g0.output, &g1.output, by_name)),
        (wire::GRAPH_VALUE_INFO, wire::plan_list(wire::GRAPH_VALUE_INFO, &g0.value_info, &g1.value_info, by_name)),
        (
            wire::GRAPH_SPARSE_INITIALIZER,
            wire::plan_list(wire::GRAPH_SPARSE_INITIALIZER, &g0.sparse_initializer, &g1.sparse_initializer, never),
        ),
    ];
    let mut model_plans = vec![(
        wire::MODEL_METADATA,
        wire::plan_list(wire::MODEL_METADATA, &before.metadata_props, &edited.metadata_props, |a, b| a.key == b.key),
    )];
    let layout = original.records().map_err(wire_error)?;
    let (_, graph_records) = layout.graph.as_ref().ok_or_else(|| internal("no graph record"))?;
    let graph_body = wire::splice_message(graph_records, &mut graph_plans, |_| None);
    let mut graph_pieces = Some(wire::wrap(wire::MODEL_GRAPH, graph_body));
    Ok(wire::coalesce(wire::splice_message(&layout.model, &mut model_plans, |r| {
        (r.field == wire::MODEL_GRAPH).then(|| graph_pieces.take().unwrap_or_default())
    })))
}

#[cfg(not(target_arch = "wasm32"))]
/// Writes the pieces of an edited model to `path` atomically, like [`write_atomically`].
pub fn write_pieces_atomically(
    path: &Path,
    original: &dyn ModelSource,
    pieces: &[Piece],
    durability: Durability,
) -> Result<()> {
    write_with(path, durability, |file| wire::write_pieces(original.source(), pieces, file))
}
