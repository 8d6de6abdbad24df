//! The protobuf wire format, just enough to carry a model's weights over without decoding them.
//!
//! A rewrite touches a few small messages (nodes, value-infos, metadata) of a model whose bytes
//! are nearly all weights. So the model is parsed from a *structure* copy in which large
//! initializers have no data, edited as messages, and written by splicing: every record that did
//! not change is copied from the input bytes verbatim, changed or new records are encoded, and
//! the result is one ordinary ModelProto with its fields in their original order.

use std::ops::Range;

use protobuf::Message;

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

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed protobuf at byte {offset}: {what}")]
pub struct WireError {
    pub offset: usize,
    pub what: &'static str,
}

/// One field record: its number, and byte ranges of the whole record and of its payload (the
/// contents of a length-delimited field, or the value bytes otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub field: u32,
    pub wire_type: u8,
    pub record: Range<usize>,
    pub payload: Range<usize>,
}

fn varint(buf: &[u8], mut at: usize) -> Result<(u64, usize), WireError> {
    let start = at;
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(at).ok_or(WireError { offset: start, what: "truncated varint" })?;
        at += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok((value, at));
        }
    }
    Err(WireError { offset: start, what: "varint longer than 10 bytes" })
}

/// The records of one message, in stream order.
pub fn records(buf: &[u8]) -> Result<Vec<Record>, WireError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let start = at;
        let (key, next) = varint(buf, at)?;
        at = next;
        let field = u32::try_from(key >> 3).map_err(|_| WireError { offset: start, what: "field number too large" })?;
        let wire_type = (key & 7) as u8;
        if field == 0 {
            return Err(WireError { offset: start, what: "field number 0" });
        }
        let payload = match wire_type {
            0 => {
                let (_, end) = varint(buf, at)?;
                at..end
            }
            1 => at..at + 8,
            5 => at..at + 4,
            2 => {
                let (len, body) = varint(buf, at)?;
                let len = usize::try_from(len).map_err(|_| WireError { offset: at, what: "length too large" })?;
                body..body.checked_add(len).ok_or(WireError { offset: at, what: "length too large" })?
            }
            _ => return Err(WireError { offset: start, what: "unsupported wire type (groups)" }),
        };
        if payload.end > buf.len() {
            return Err(WireError { offset: start, what: "field runs past the end" });
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
fn len_header(field: u32, len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(8);
    put_varint(&mut h, (u64::from(field) << 3) | LEN);
    put_varint(&mut h, len as u64);
    h
}

/// A length-delimited record holding an encoded message.
pub fn message_record<M: Message>(field: u32, message: &M) -> Vec<u8> {
    let body = message.write_to_bytes().expect("in-memory messages always encode");
    let mut r = len_header(field, body.len());
    r.extend_from_slice(&body);
    r
}

/// The single graph record of a model. A graph split over several records (legal, as protobuf
/// merges them, but never written by ONNX tools) is refused rather than handled half-way.
pub fn graph_record(model: &[u8]) -> Result<Option<Record>, WireError> {
    let mut graphs = records(model)?.into_iter().filter(|r| r.field == MODEL_GRAPH && r.wire_type == LEN as u8);
    let first = graphs.next();
    if let Some(second) = graphs.next() {
        return Err(WireError { offset: second.record.start, what: "the graph is split over several records" });
    }
    Ok(first)
}

/// A copy of the model bytes in which every graph initializer whose record exceeds `min_bytes`
/// keeps its name, type and dims but no data.
pub fn strip_weights(model: &[u8], min_bytes: usize) -> Result<Vec<u8>, WireError> {
    let Some(graph) = graph_record(model)? else { return Ok(model.to_vec()) };
    let body = &model[graph.payload.clone()];
    let mut new_body = Vec::new();
    for r in records(body)? {
        let is_big_initializer = r.field == GRAPH_INITIALIZER && r.payload.len() > min_bytes;
        if !is_big_initializer {
            new_body.extend_from_slice(&body[r.record]);
            continue;
        }
        let tensor = &body[r.payload.clone()];
        let mut kept = Vec::new();
        for f in records(tensor).map_err(|e| WireError { offset: e.offset + r.payload.start, ..e })? {
            if !TENSOR_DATA.contains(&f.field) {
                kept.extend_from_slice(&tensor[f.record]);
            }
        }
        new_body.extend(len_header(GRAPH_INITIALIZER, kept.len()));
        new_body.extend(kept);
    }
    let mut out = Vec::with_capacity(model.len() - body.len() + new_body.len());
    out.extend_from_slice(&model[..graph.record.start]);
    out.extend(len_header(MODEL_GRAPH, new_body.len()));
    out.extend(new_body);
    out.extend_from_slice(&model[graph.record.end..]);
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

/// Output pieces: borrowed slices of the input and small owned encodings.
#[derive(Debug)]
pub enum Piece<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Piece<'_> {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Piece::Borrowed(b) => b,
            Piece::Owned(v) => v,
        }
    }
}

/// Applies plans to one message's records. New records of a field go right after its last
/// existing record, or, when it had none, before the first record of a higher field number,
/// which keeps canonically ordered input canonical.
pub fn splice_message<'a>(
    buf: &'a [u8],
    plans: &mut [(u32, ListPlan)],
    mut replace_record: impl FnMut(&Record) -> Option<Vec<Piece<'a>>>,
) -> Result<Vec<Piece<'a>>, WireError> {
    let recs = records(buf)?;
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
                    Fate::Keep => out.push(Piece::Borrowed(&buf[r.record.clone()])),
                    Fate::Drop => {}
                    Fate::Replace(bytes) => out.push(Piece::Owned(bytes)),
                }
                if last_of(r.field) == Some(i) {
                    out.extend(plans[p].1.appended.drain(..).map(Piece::Owned));
                }
            }
            None => match replace_record(r) {
                Some(pieces) => out.extend(pieces),
                None => out.push(Piece::Borrowed(&buf[r.record.clone()])),
            },
        }
    }
    for (p, slot) in append_before.iter().enumerate() {
        if slot.is_some() {
            out.extend(plans[p].1.appended.drain(..).map(Piece::Owned));
        }
    }
    Ok(out)
}

/// Wraps pieces forming a message body into a length-delimited record of `field`.
pub fn wrap<'a>(field: u32, body: Vec<Piece<'a>>) -> Vec<Piece<'a>> {
    let len: usize = body.iter().map(|p| p.bytes().len()).sum();
    let mut out = vec![Piece::Owned(len_header(field, len))];
    out.extend(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
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
        let stripped = ModelProto::parse_from_bytes(&strip_weights(&bytes, 64).unwrap()).unwrap();
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
            assert!(records(&bytes[..cut]).is_err() || strip_weights(&bytes[..cut], 64).is_err());
        }
    }

    #[test]
    fn plans_keep_drop_replace_and_append() {
        let a = proto::metadata_entry("a", "1");
        let b = proto::metadata_entry("b", "2");
        let b2 = proto::metadata_entry("b", "3");
        let c = proto::metadata_entry("c", "4");
        let plan = plan_list(14, &[a.clone(), b.clone(), c.clone()], &[b2.clone(), c.clone(), a.clone()], |x, y| x.key == y.key);
        assert_eq!(plan.existing, [Fate::Drop, Fate::Replace(message_record(14, &b2)), Fate::Keep]);
        assert_eq!(plan.appended, [message_record(14, &a)]);
    }
}
