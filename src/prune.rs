//! `--prune`: keep only the listed outputs and what feeds them.

use std::collections::HashSet;

use onnx_protobuf::GraphProto;

use crate::model::walk;

/// Removes every node, initializer and value-info that does not feed `keep_outputs`, and every
/// other graph output. Graph inputs stay (they are the model's interface) unless they are
/// initializers nothing reads any more. Returns the number of nodes removed.
pub fn prune(graph: &mut GraphProto, keep_outputs: &[&str]) -> usize {
    let walk::Feeders { nodes: keep, tensors } = walk::feeders(graph, keep_outputs, |_| false);
    let needed: HashSet<String> = tensors.into_iter().collect();
    let before = graph.node.len();
    let mut kept = keep.iter();
    graph.node.retain(|_| *kept.next().expect("one flag per node"));
    let initializers: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
    graph.initializer.retain(|t| needed.contains(&t.name));
    graph.sparse_initializer.retain(|t| t.values.as_ref().is_none_or(|v| needed.contains(&v.name)));
    graph.input.retain(|i| !initializers.contains(&i.name) || needed.contains(&i.name));
    graph.output.retain(|o| keep_outputs.contains(&o.name.as_str()));
    graph.value_info.retain(|v| needed.contains(&v.name));
    before - graph.node.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::proto::{node, value_info, Dim};
    use onnx_protobuf::tensor_proto::DataType;

    #[test]
    fn keeps_only_what_feeds_the_output_even_out_of_order() {
        let mut g = GraphProto::new();
        g.node = vec![
            node("Relu", "c", &["b"], &["out"], vec![]),
            node("Relu", "a", &["in"], &["b"], vec![]),
            node("Relu", "side", &["in"], &["other"], vec![]),
        ];
        g.input = vec![value_info("in", DataType::FLOAT, &[Dim::Fixed(1)])];
        g.output = vec![
            value_info("other", DataType::FLOAT, &[Dim::Fixed(1)]),
            value_info("out", DataType::FLOAT, &[Dim::Fixed(1)]),
        ];
        assert_eq!(prune(&mut g, &["out"]), 1);
        let names: Vec<_> = g.node.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["c", "a"]);
        assert_eq!(g.output.len(), 1);
        assert_eq!(g.input.len(), 1);
    }
}
