//! The protobuf wire format, just enough to carry a model's weights over without decoding them.
//!
//! A rewrite touches a few small messages (nodes, value-infos, metadata) of a model whose bytes
//! are nearly all weights. So the model is parsed from a *structure* copy in which large
//! initializers have no data, edited as messages, and written by splicing: every record that did
//! not change is copied from the input bytes verbatim, changed or new records are encoded, and
//! the result is one ordinary ModelProto with its fields in their original order.

#[cfg(not(target_arch = "wasm32"))]
use std::io::Write;
use std::ops::Range;

use protobuf::Message;

use super::source::Source;

/// ModelProto.graph
pub const MODEL_GRAPH: u32 = 7;
/// ModelProto.metadata_props
pub const MODEL_METADATA: u32 = 14;
/// GraphProto fields that are lists of messages the rewrite may edit.
pub const GRAPH_NODE: u32 = 1;
pub const GRAPH_INITIALIZER: u32 = 5;
pub const GRAPH_INPUT: u32 = 11;
pub const GRAPH_OUTPUT: u32 = 12;
pub const GRAPH_VALUE_INFO: u32 = 13;
pub const GRAPH_SPARSE_INITIALIZER: u32 = 15;
/// TensorProto fields holding data: float_data, int32_data, string_data, int64_data, raw_data,
/// double_data, uint64_data.
const TENSOR_DATA: [u32; 7] = [4, 5, 6, 7, 9, 10, 11];

const LEN: u64 = 2;

/// An unknown field the structure parse adds to an initializer whose data it left out: the
/// byte length of its `raw_data` plus one, or 0 when the data was in typed fields. Never written
/// to an output (outputs are spliced from the original bytes).
pub const STRIPPED_MARK: u32 = 536_870_000;

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed protobuf at byte {offset}: {what}")]
    Malformed { offset: u64, what: &'static str },
    #[error("cannot read the model: {0}")]
    Io(#[from] std::io::Error),
}

fn malformed(offset: u64, what: &'static str) -> WireError {
    WireError::Malformed { offset, what }
}

/// One field record: its number, and absolute byte ranges of the whole record and of its payload
/// (the contents of a length-delimited field, or the value bytes otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub field: u32,
    pub wire_type: u8,
    pub record: Range<u64>,
    pub payload: Range<u64>,
}

/// Decodes a varint from the start of `buf`: (value, bytes used).
fn varint(buf: &[u8], offset: u64) -> Result<(u64, usize), WireError> {
    let mut value = 0u64;
    for (i, byte) in buf.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(malformed(offset, if buf.len() < 10 { "truncated varint" } else { "varint longer than 10 bytes" }))
}

/// The records of the message held in `range` of `src`, in stream order. Only record headers
/// are read: a record's payload is skipped over, however large.
pub fn records(src: &(impl Source + ?Sized), range: Range<u64>) -> Result<Vec<Record>, WireError> {
    if range.end > src.len() || range.start > range.end {
        return Err(malformed(range.start, "message runs past the end"));
    }
    let mut out = Vec::new();
    let mut at = range.start;
    let mut head = [0u8; 20];
    while at < range.end {
        let start = at;
        let n = (range.end - at).min(head.len() as u64) as usize;
        src.read_at(at, &mut head[..n])?;
        let head = &head[..n];
        let (key, used) = varint(head, start)?;
        let field = u32::try_from(key >> 3).map_err(|_| malformed(start, "field number too large"))?;
        let wire_type = (key & 7) as u8;
        if field == 0 {
            return Err(malformed(start, "field number 0"));
        }
        let body = at + used as u64;
        let payload = match wire_type {
            0 => {
                let (_, len) = varint(&head[used..], body)?;
                body..body + len as u64
            }
            1 => body..body + 8,
            5 => body..body + 4,
            2 => {
                let (len, len_bytes) = varint(&head[used..], body)?;
                let content = body + len_bytes as u64;
                content..content.checked_add(len).ok_or(malformed(body, "length too large"))?
            }
            _ => return Err(malformed(start, "unsupported wire type (groups)")),
        };
        if payload.end > range.end {
            return Err(malformed(start, "field runs past the end"));
        }
        at = payload.end;
        out.push(Record { field, wire_type, record: start..at, payload });
    }
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// The tag and length of a length-delimited record.
fn len_header(field: u32, len: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(8);
    put_varint(&mut h, (u64::from(field) << 3) | LEN);
    put_varint(&mut h, len);
    h
}

/// A length-delimited record holding an encoded message.
pub fn message_record<M: Message>(field: u32, message: &M) -> Vec<u8> {
    let body = message.write_to_bytes().expect("in-memory messages always encode");
    let mut r = len_header(field, body.len() as u64);
    r.extend_from_slice(&body);
    r
}

/// Where a model's records lie: its top-level records and, when it has one, its graph record
/// with the graph's own records. Walked once when a model is opened, then used both to strip the
/// weights and to splice the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRecords {
    pub model: Vec<Record>,
    pub graph: Option<(Record, Vec<Record>)>,
}

impl ModelRecords {
    /// Walks the record headers of the model in `src` and of its graph. A graph split over
    /// several records (legal, as protobuf merges them, but never written by ONNX tools) is
    /// refused rather than handled half-way.
    pub fn read(src: &(impl Source + ?Sized)) -> Result<ModelRecords, WireError> {
        let model = records(src, 0..src.len())?;
        let mut graphs = model.iter().filter(|r| r.field == MODEL_GRAPH && r.wire_type == LEN as u8);
        let first = graphs.next().cloned();
        if let Some(second) = graphs.next() {
            return Err(malformed(second.record.start, "the graph is split over several records"));
        }
        let graph = match first {
            Some(g) => {
                let inner = records(src, g.payload.clone())?;
                Some((g, inner))
            }
            None => None,
        };
        Ok(ModelRecords { model, graph })
    }
}

/// The model's bytes with every graph initializer whose record exceeds `min_bytes` kept without
/// its data (name, type and dims stay). The data is never read.
pub fn strip_weights(
    src: &(impl Source + ?Sized),
    layout: &ModelRecords,
    min_bytes: u64,
) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    for r in &layout.model {
        let graph = layout.graph.as_ref().filter(|(g, _)| g == r);
        let Some((_, graph_records)) = graph else {
            out.extend(src.read_range(r.record.clone())?);
            continue;
        };
        let mut body = Vec::new();
        for g in graph_records {
            let big = g.field == GRAPH_INITIALIZER && g.payload.end - g.payload.start > min_bytes;
            if !big {
                body.extend(src.read_range(g.record.clone())?);
                continue;
            }
            let mut kept = Vec::new();
            let mut raw_len = None;
            for f in records(src, g.payload.clone())? {
                if !TENSOR_DATA.contains(&f.field) {
                    kept.extend(src.read_range(f.record)?);
                } else if f.field == 9 {
                    raw_len = Some(f.payload.end - f.payload.start);
                }
            }
            put_varint(&mut kept, u64::from(STRIPPED_MARK) << 3);
            put_varint(&mut kept, raw_len.map_or(0, |n| n + 1));
            body.extend(len_header(GRAPH_INITIALIZER, kept.len() as u64));
            body.extend(kept);
        }
        out.extend(len_header(MODEL_GRAPH, body.len() as u64));
        out.extend(body);
    }
    Ok(out)
}

/// What becomes of one repeated field: its existing records in order, then new ones after them.
#[derive(Debug, Clone, Default)]
pub struct ListPlan {
    pub existing: Vec<Fate>,
    pub appended: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    Keep,
    Drop,
    /// An encoded record that takes the place of the original.
    Replace(Vec<u8>),
}

/// Aligns an edited list with the original one, where the edit only removes entries, changes
/// entries in place (`same` tells an entry apart from a different one) and appends at the end.
pub fn plan_list<M: Message + PartialEq>(
    field: u32,
    original: &[M],
    edited: &[M],
    same: impl Fn(&M, &M) -> bool,
) -> ListPlan {
    let mut j = 0;
    let mut existing = Vec::with_capacity(original.len());
    for o in original {
        match edited.get(j) {
            Some(e) if o == e => {
                existing.push(Fate::Keep);
                j += 1;
            }
            Some(e) if same(o, e) => {
                existing.push(Fate::Replace(message_record(field, e)));
                j += 1;
            }
            _ => existing.push(Fate::Drop),
        }
    }
    let appended = edited[j..].iter().map(|e| message_record(field, e)).collect();
    ListPlan { existing, appended }
}

/// Output pieces: ranges of the original bytes, and small encodings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Original(Range<u64>),
    Owned(Vec<u8>),
}

impl Piece {
    pub fn len(&self) -> u64 {
        match self {
            Piece::Original(r) => r.end - r.start,
            Piece::Owned(v) => v.len() as u64,
        }
    }

    #[cfg(feature = "testing")]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Applies plans to the records of one message. New records of a field go right after its last
/// existing record, or, when it had none, before the first record of a higher field number,
/// which keeps canonically ordered input canonical. `replace_record` may substitute pieces for a
/// record the plans do not cover.
pub fn splice_message(
    recs: &[Record],
    plans: &mut [(u32, ListPlan)],
    mut replace_record: impl FnMut(&Record) -> Option<Vec<Piece>>,
) -> Vec<Piece> {
    let mut out = Vec::new();
    let mut seen = vec![0usize; plans.len()];
    let last_of = |field: u32| recs.iter().rposition(|r| r.field == field);
    let mut append_before: Vec<Option<usize>> = plans
        .iter()
        .map(|(field, _)| match last_of(*field) {
            Some(_) => None,
            None => Some(recs.iter().position(|r| r.field > *field).unwrap_or(recs.len())),
        })
        .collect();
    for (i, r) in recs.iter().enumerate() {
        for (p, slot) in append_before.iter_mut().enumerate() {
            if *slot == Some(i) {
                out.extend(plans[p].1.appended.drain(..).map(Piece::Owned));
                *slot = None;
            }
        }
        match plans.iter().position(|(f, _)| *f == r.field) {
            Some(p) => {
                let fate = plans[p].1.existing.get(seen[p]).cloned().unwrap_or(Fate::Keep);
                seen[p] += 1;
                match fate {
                    Fate::Keep => out.push(Piece::Original(r.record.clone())),
                    Fate::Drop => {}
                    Fate::Replace(bytes) => out.push(Piece::Owned(bytes)),
                }
                if last_of(r.field) == Some(i) {
                    out.extend(plans[p].1.appended.drain(..).map(Piece::Owned));
                }
            }
            None => match replace_record(r) {
                Some(pieces) => out.extend(pieces),
                None => out.push(Piece::Original(r.record.clone())),
            },
        }
    }
    for (p, slot) in append_before.iter().enumerate() {
        if slot.is_some() {
            out.extend(plans[p].1.appended.drain(..).map(Piece::Owned));
        }
    }
    out
}

/// Wraps pieces forming a message body into a length-delimited record of `field`.
pub fn wrap(field: u32, body: Vec<Piece>) -> Vec<Piece> {
    let len: u64 = body.iter().map(Piece::len).sum();
    let mut out = vec![Piece::Owned(len_header(field, len))];
    out.extend(body);
    out
}

/// Joins original ranges that follow each other, so that a run of unchanged records (all the
/// weights, typically) is copied in one call.
pub fn coalesce(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
    for p in pieces {
        match (out.last_mut(), p) {
            (Some(Piece::Original(a)), Piece::Original(b)) if a.end == b.start => a.end = b.end,
            (_, p) => out.push(p),
        }
    }
    out
}

/// Writes pieces to `out`, original ranges copied from `src`. Native only, like files.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_pieces(src: &(impl Source + ?Sized), pieces: &[Piece], out: &mut std::fs::File) -> std::io::Result<()> {
    for p in pieces {
        match p {
            Piece::Original(r) => src.copy_to(r.clone(), out)?,
            Piece::Owned(v) => out.write_all(v)?,
        }
    }
    Ok(())
}

/// The pieces as one buffer.
pub fn collect_pieces(src: &(impl Source + ?Sized), pieces: &[Piece]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(pieces.iter().map(Piece::len).sum::<u64>() as usize);
    for p in pieces {
        match p {
            Piece::Original(r) => out.extend(src.read_range(r.clone())?),
            Piece::Owned(v) => out.extend_from_slice(v),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::proto;
    use onnx_protobuf::{GraphProto, ModelProto};

    fn model() -> ModelProto {
        let mut g = GraphProto::new();
        g.node.push(proto::node("Relu", "a", &["x"], &["y"], vec![]));
        g.initializer.push(proto::tensor_f32("big", &[1000], &[1.5; 1000]));
        g.initializer.push(proto::tensor_f32("small", &[2], &[1.0, 2.0]));
        let mut m = ModelProto::new();
        m.ir_version = 7;
        m.graph = Some(g).into();
        m.metadata_props.push(proto::metadata_entry("k", "v"));
        m
    }

    #[test]
    fn stripping_drops_only_large_tensor_data() {
        let bytes = model().write_to_bytes().unwrap();
        let layout = ModelRecords::read(bytes.as_slice()).unwrap();
        let stripped = ModelProto::parse_from_bytes(&strip_weights(bytes.as_slice(), &layout, 64).unwrap()).unwrap();
        let g = stripped.graph.as_ref().unwrap();
        assert!(g.initializer[0].raw_data.is_empty());
        assert_eq!(g.initializer[0].dims, [1000]);
        assert_eq!(g.initializer[0].name, "big");
        assert_eq!(g.initializer[1].raw_data.len(), 8);
        assert_eq!(stripped.metadata_props, model().metadata_props);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let bytes = model().write_to_bytes().unwrap();
        for cut in [1, 3, bytes.len() / 2, bytes.len() - 1] {
            let cut = &bytes[..cut];
            let stripped = ModelRecords::read(cut).and_then(|layout| strip_weights(cut, &layout, 64));
            assert!(stripped.is_err(), "cut at {cut:?}");
        }
    }

    #[test]
    fn plans_keep_drop_replace_and_append() {
        let a = proto::metadata_entry("a", "1");
        let b = proto::metadata_entry("b", "2");
        let b2 = proto::metadata_entry("b", "3");
        let c = proto::metadata_entry("c", "4");
        let plan = plan_list(14, &[a.clone(), b.clone(), c.clone()], &[b2.clone(), c.clone(), a.clone()], |x, y| {
            x.key == y.key
        });
        assert_eq!(plan.existing, [Fate::Drop, Fate::Replace(message_record(14, &b2)), Fate::Keep]);
        assert_eq!(plan.appended, [message_record(14, &a)]);
    }

    #[test]
    fn adjacent_original_ranges_are_joined() {
        let pieces = vec![
            Piece::Original(0..4),
            Piece::Original(4..10),
            Piece::Owned(vec![1]),
            Piece::Original(10..12),
            Piece::Original(13..14),
        ];
        assert_eq!(
            coalesce(pieces),
            [Piece::Original(0..10), Piece::Owned(vec![1]), Piece::Original(10..12), Piece::Original(13..14)]
        );
    }
}
