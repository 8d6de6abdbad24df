//! ONNX element types, one table: their ONNX names (`TensorProto.DataType` lowercase, as profiles
//! and reports spell them), tract's datum types for them, and the two float types the decoders
//! read and write.

use onnx_protobuf::tensor_proto::DataType;
use protobuf::Enum;
use tract_onnx::prelude::DatumType;

use crate::contract::FloatType;

/// The ONNX element types tract also has, paired.
const PAIRS: [(DataType, DatumType); 13] = [
    (DataType::FLOAT, DatumType::F32),
    (DataType::FLOAT16, DatumType::F16),
    (DataType::DOUBLE, DatumType::F64),
    (DataType::INT64, DatumType::I64),
    (DataType::INT32, DatumType::I32),
    (DataType::INT16, DatumType::I16),
    (DataType::INT8, DatumType::I8),
    (DataType::UINT64, DatumType::U64),
    (DataType::UINT32, DatumType::U32),
    (DataType::UINT16, DatumType::U16),
    (DataType::UINT8, DatumType::U8),
    (DataType::BOOL, DatumType::Bool),
    (DataType::STRING, DatumType::String),
];

/// The ONNX name of element type `elem` (`float`, `float16`, `bool`, ...); `None` for
/// UNDEFINED or a number ONNX does not define.
pub fn onnx_name(elem: i32) -> Option<String> {
    DataType::from_i32(elem).filter(|d| *d != DataType::UNDEFINED).map(|d| format!("{d:?}").to_lowercase())
}

/// The ONNX name of a tract datum type (tract's own name, lowercase, for the few ONNX lacks).
pub fn datum_name(dt: DatumType) -> String {
    match PAIRS.iter().find(|(_, d)| *d == dt) {
        Some((onnx, _)) => onnx_name(*onnx as i32).expect("a defined type"),
        None => format!("{dt:?}").to_lowercase(),
    }
}

/// tract's datum type for ONNX element type `elem`, where tract has one.
pub fn to_datum(elem: i32) -> Option<DatumType> {
    let onnx = DataType::from_i32(elem)?;
    PAIRS.iter().find(|(o, _)| *o == onnx).map(|(_, d)| *d)
}

/// The float type the decoders read a head of datum type `dt` as: float32, and float16
/// (through an exact Cast); `None` for any other.
pub fn float_type(dt: DatumType) -> Option<FloatType> {
    match dt {
        DatumType::F32 => Some(FloatType::Float32),
        DatumType::F16 => Some(FloatType::Float16),
        _ => None,
    }
}

/// The ONNX element type of a float type.
pub fn onnx_float(ty: FloatType) -> DataType {
    match ty {
        FloatType::Float32 => DataType::FLOAT,
        FloatType::Float16 => DataType::FLOAT16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_onnx_names_both_ways() {
        assert_eq!(onnx_name(DataType::FLOAT as i32).as_deref(), Some("float"));
        assert_eq!(onnx_name(DataType::BFLOAT16 as i32).as_deref(), Some("bfloat16"));
        assert_eq!(onnx_name(0), None);
        assert_eq!(onnx_name(999), None);
        for (onnx, datum) in PAIRS {
            assert_eq!(to_datum(onnx as i32), Some(datum));
            assert_eq!(Some(datum_name(datum)), onnx_name(onnx as i32));
        }
        assert_eq!(to_datum(DataType::BFLOAT16 as i32), None);
        for ty in [FloatType::Float32, FloatType::Float16] {
            assert_eq!(to_datum(onnx_float(ty) as i32).and_then(float_type), Some(ty));
        }
    }
}
