//! ONNX element types, one table: their ONNX names (`TensorProto.DataType` lowercase, as profiles
//! and reports spell them) and tract's datum types for them. The two float types the decoders
//! read and write map themselves ([`crate::contract::FloatType`]).

use onnx_protobuf::tensor_proto::DataType;
use protobuf::Enum;
use tract_onnx::prelude::DatumType;

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
    }
}
