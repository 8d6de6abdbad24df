//! Constructors and readers for the ONNX protobuf messages (`onnx-protobuf`).
//!
//! Every node, tensor and value-info the project creates, whether in the decoder it appends or in
//! the synthetic models its tests generate, is built here, so that the encoding choices (raw
//! little-endian tensor data, attribute types) live in one place.

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::type_proto;
use onnx_protobuf::{
    AttributeProto, NodeProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// One dimension of a declared tensor shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(i64),
    Symbol(String),
    /// Declared, but with neither value nor name.
    Unknown,
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(v) => write!(f, "{v}"),
            Dim::Symbol(s) => write!(f, "{s}"),
            Dim::Unknown => write!(f, "?"),
        }
    }
}

/// A node in the default domain.
pub fn node(
    op_type: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attributes: Vec<AttributeProto>,
) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op_type.to_string();
    n.name = name.to_string();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    n.attribute = attributes;
    n
}

pub fn attr_int(name: &str, value: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = AttributeType::INT.into();
    a.i = value;
    a
}

pub fn attr_ints(name: &str, values: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = AttributeType::INTS.into();
    a.ints = values.to_vec();
    a
}

pub fn attr_float(name: &str, value: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.to_string();
    a.type_ = AttributeType::FLOAT.into();
    a.f = value;
    a
}

/// A float32 tensor stored as raw little-endian bytes (the compact form every reader accepts).
pub fn tensor_f32(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<i64>() as usize, values.len());
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = dims.to_vec();
    t.data_type = DataType::FLOAT as i32;
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

/// An int64 tensor stored as raw little-endian bytes.
pub fn tensor_i64(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    debug_assert_eq!(dims.iter().product::<i64>() as usize, values.len());
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.dims = dims.to_vec();
    t.data_type = DataType::INT64 as i32;
    t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    t
}

/// The values of a float32 tensor, from `raw_data` or `float_data`; `None` for other types or
/// external data.
pub fn tensor_f32_values(t: &TensorProto) -> Option<Vec<f32>> {
    if t.data_type != DataType::FLOAT as i32 || !t.external_data.is_empty() {
        return None;
    }
    if !t.raw_data.is_empty() {
        if !t.raw_data.len().is_multiple_of(4) {
            return None;
        }
        return Some(t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
    }
    Some(t.float_data.clone())
}

/// The values of an int64 tensor, from `raw_data` or `int64_data`.
pub fn tensor_i64_values(t: &TensorProto) -> Option<Vec<i64>> {
    if t.data_type != DataType::INT64 as i32 || !t.external_data.is_empty() {
        return None;
    }
    if !t.raw_data.is_empty() {
        if !t.raw_data.len().is_multiple_of(8) {
            return None;
        }
        return Some(
            t.raw_data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("chunk of 8"))).collect(),
        );
    }
    Some(t.int64_data.clone())
}

/// A value-info for a tensor of `elem_type` (an ONNX `DataType`) with the given shape.
pub fn value_info(name: &str, elem_type: DataType, dims: &[Dim]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    shape.dim = dims.iter().map(dimension_proto).collect();
    let mut tensor = type_proto::Tensor::new();
    tensor.elem_type = elem_type as i32;
    tensor.shape = Some(shape).into();
    let mut ty = TypeProto::new();
    ty.value = Some(type_proto::Value::TensorType(tensor));
    let mut vi = ValueInfoProto::new();
    vi.name = name.to_string();
    vi.type_ = Some(ty).into();
    vi
}

pub fn dimension_proto(dim: &Dim) -> Dimension {
    let mut d = Dimension::new();
    match dim {
        Dim::Fixed(v) => d.value = Some(dimension::Value::DimValue(*v)),
        Dim::Symbol(s) => d.value = Some(dimension::Value::DimParam(s.clone())),
        Dim::Unknown => {}
    }
    d
}

/// The declared element type and shape of a value-info, when it declares a tensor.
pub fn declared_tensor(vi: &ValueInfoProto) -> Option<(i32, Option<Vec<Dim>>)> {
    let ty = vi.type_.as_ref()?;
    match &ty.value {
        Some(type_proto::Value::TensorType(t)) => {
            let dims = t.shape.as_ref().map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(dimension::Value::DimValue(v)) => Dim::Fixed(*v),
                        Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Symbol(p.clone()),
                        _ => Dim::Unknown,
                    })
                    .collect()
            });
            Some((t.elem_type, dims))
        }
        _ => None,
    }
}

/// Replaces the declared shape of a tensor value-info (used to write pinned input shapes).
pub fn set_declared_shape(vi: &mut ValueInfoProto, dims: &[Dim]) {
    if let Some(ty) = vi.type_.as_mut() {
        if let Some(type_proto::Value::TensorType(t)) = &mut ty.value {
            let mut shape = TensorShapeProto::new();
            shape.dim = dims.iter().map(dimension_proto).collect();
            t.shape = Some(shape).into();
        }
    }
}

pub fn metadata_entry(key: &str, value: &str) -> StringStringEntryProto {
    let mut e = StringStringEntryProto::new();
    e.key = key.to_string();
    e.value = value.to_string();
    e
}

/// The integer attribute `name` of a node, if present as an integer (or untyped, as models from
/// before IR 2 write them); an attribute of another type is not an integer.
pub fn get_attr_int(node: &NodeProto, name: &str) -> Option<i64> {
    let attr = node.attribute.iter().find(|a| a.name == name)?;
    matches!(attr.type_.enum_value(), Ok(AttributeType::INT | AttributeType::UNDEFINED)).then_some(attr.i)
}
