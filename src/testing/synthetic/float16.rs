//! Float16 conversions of models, as onnxconverter-common makes them.

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::ModelProto;

use crate::model::proto::node;

/// `model` converted to float16 as onnxconverter-common's `convert_float_to_float16` converts a
/// PoseNet: every float32 initializer and declared tensor becomes float16. With
/// `keep_io_types`, the graph's inputs and outputs stay float32 and Casts go in between (the
/// heads are then float32 outputs of Casts). Only for graphs whose ops take float16 as they take
/// float32 (Conv, Clip, Sigmoid, Transpose, Reshape: the synthetic models and the real one).
///
/// # Panics
///
/// On a float32 initializer without readable values (a stripped or external one).
pub fn float16(model: &ModelProto, keep_io_types: bool) -> ModelProto {
    use tract_onnx::prelude::f16;
    let mut out = model.clone();
    let g = out.graph.as_mut().expect("a model with a graph");
    for t in g.initializer.iter_mut().filter(|t| t.data_type == DataType::FLOAT as i32) {
        let values = crate::model::proto::tensor_f32_values(t).expect("a float32 initializer with its values");
        t.float_data.clear();
        t.raw_data = values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect();
        t.data_type = DataType::FLOAT16 as i32;
    }
    let to_f16 = |vi: &mut onnx_protobuf::ValueInfoProto| {
        if let Some(onnx_protobuf::type_proto::Value::TensorType(t)) = vi.type_.as_mut().and_then(|t| t.value.as_mut())
        {
            if t.elem_type == DataType::FLOAT as i32 {
                t.elem_type = DataType::FLOAT16 as i32;
            }
        }
    };
    g.value_info.iter_mut().for_each(to_f16);
    if !keep_io_types {
        g.input.iter_mut().chain(g.output.iter_mut()).for_each(to_f16);
        return out;
    }
    let cast = |name: &str, from: &str, to: &str, ty: DataType| {
        node("Cast", name, &[from], &[to], vec![crate::model::proto::attr_int("to", ty as i64)])
    };
    let (inputs, outputs): (Vec<String>, Vec<String>) =
        (g.input.iter().map(|i| i.name.clone()).collect(), g.output.iter().map(|o| o.name.clone()).collect());
    let rename = |nodes: &mut [onnx_protobuf::NodeProto], from: &str, to: &str, inputs_side: bool| {
        for n in nodes {
            let names = if inputs_side { &mut n.input } else { &mut n.output };
            names.iter_mut().filter(|x| *x == from).for_each(|x| *x = to.to_string());
        }
    };
    for name in &inputs {
        let inner = format!("{name}_f16");
        rename(&mut g.node, name, &inner, true);
        g.node.insert(0, cast(&format!("{name}_cast"), name, &inner, DataType::FLOAT16));
    }
    for name in &outputs {
        let inner = format!("{name}_f16");
        rename(&mut g.node, name, &inner, false);
        rename(&mut g.node, name, &inner, true);
        g.node.push(cast(&format!("{name}_cast"), &inner, name, DataType::FLOAT));
    }
    out
}
