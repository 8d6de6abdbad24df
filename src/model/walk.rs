//! The one walk over nested graphs. A node's graph-valued attributes (the bodies of If, Loop and
//! Scan, or any other op's, which ONNX allows and runtimes ignore) hold graphs whose names share
//! the model's scope and whose nodes may read the enclosing graph's tensors. Everything that must
//! see them (the names a rewrite may not take, what a node reads, the renaming of weights, the
//! validation of hostile models) walks them here.

use std::collections::HashSet;

use onnx_protobuf::{GraphProto, NodeProto};

/// The graphs held by `node`'s attributes, one level down.
pub fn subgraphs(node: &NodeProto) -> impl Iterator<Item = &GraphProto> {
    node.attribute.iter().flat_map(|a| a.g.as_ref().into_iter().chain(&a.graphs))
}

/// `graph` and every graph nested in it, at any depth, parents first.
pub fn graphs(graph: &GraphProto) -> Vec<&GraphProto> {
    let mut all = vec![graph];
    let mut next = 0;
    while next < all.len() {
        let g = all[next];
        all.extend(g.node.iter().flat_map(subgraphs));
        next += 1;
    }
    all
}

/// Calls `f` on every node of `nodes` and of the graphs nested in them, at any depth.
pub fn for_each_node_mut(nodes: &mut [NodeProto], f: &mut impl FnMut(&mut NodeProto)) {
    for node in nodes {
        f(node);
        for attr in node.attribute.iter_mut() {
            for g in attr.g.as_mut().into_iter().chain(attr.graphs.iter_mut()) {
                for_each_node_mut(&mut g.node, f);
            }
        }
    }
}

/// The tensors `node` reads from the enclosing scope: its inputs, and what its subgraphs read at
/// any depth that they do not define themselves.
pub fn outer_reads(node: &NodeProto, into: &mut Vec<String>) {
    into.extend(node.input.iter().filter(|i| !i.is_empty()).cloned());
    for g in subgraphs(node) {
        let local: HashSet<&str> = g
            .node
            .iter()
            .flat_map(|n| n.output.iter())
            .chain(g.input.iter().map(|i| &i.name))
            .chain(g.initializer.iter().map(|t| &t.name))
            .map(String::as_str)
            .collect();
        let mut inner = vec![];
        for n in &g.node {
            outer_reads(n, &mut inner);
        }
        into.extend(inner.into_iter().filter(|t| !local.contains(t.as_str())));
    }
}

/// What feeds some tensors of a graph: the nodes that compute them, directly or not, and every
/// tensor read on the way.
#[derive(Debug)]
pub struct Feeders {
    /// One flag per node of the graph, in its order: whether the node feeds the tensors.
    pub nodes: Vec<bool>,
    /// The tensors reached, the wanted ones included, first reached first; none twice.
    pub tensors: Vec<String>,
}

/// What feeds `wanted` in `graph`, walking back from it through every node's reads (their
/// subgraphs' included); a tensor for which `stop` holds is reached but not walked through. The
/// graph need not be in topological order.
pub fn feeders(graph: &GraphProto, wanted: &[&str], stop: impl Fn(&str) -> bool) -> Feeders {
    let mut producers: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for o in &node.output {
            producers.entry(o.as_str()).or_insert(i);
        }
    }
    let mut nodes = vec![false; graph.node.len()];
    let mut tensors = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<String> = wanted.iter().rev().map(|s| s.to_string()).collect();
    while let Some(tensor) = stack.pop() {
        if !seen.insert(tensor.clone()) {
            continue;
        }
        tensors.push(tensor.clone());
        if stop(&tensor) {
            continue;
        }
        if let Some(&i) = producers.get(tensor.as_str()) {
            nodes[i] = true;
            let mut reads = Vec::new();
            outer_reads(&graph.node[i], &mut reads);
            stack.extend(reads.into_iter().rev());
        }
    }
    Feeders { nodes, tensors }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::proto;
    use onnx_protobuf::AttributeProto;

    fn with_body(node: &mut NodeProto, body: GraphProto) {
        let mut a = AttributeProto::new();
        a.name = "then_branch".into();
        a.g = Some(body).into();
        node.attribute.push(a);
    }

    #[test]
    fn nested_graphs_are_walked_at_any_depth() {
        let mut inner = GraphProto::new();
        inner.node.push(proto::node("Relu", "deep", &["outer_t", "inner_in"], &["deep_out"], vec![]));
        inner.input.push(proto::value_info("inner_in", onnx_protobuf::tensor_proto::DataType::FLOAT, &[]));
        let mut middle_node = proto::node("If", "mid", &["c"], &["mid_out"], vec![]);
        with_body(&mut middle_node, inner);
        let mut middle = GraphProto::new();
        middle.node.push(middle_node);
        let mut top = proto::node("If", "top", &["cond"], &["top_out"], vec![]);
        with_body(&mut top, middle);
        let mut reads = vec![];
        outer_reads(&top, &mut reads);
        assert_eq!(reads, ["cond", "c", "outer_t"]);
        let mut g = GraphProto::new();
        g.node.push(top);
        assert_eq!(graphs(&g).len(), 3);
        let mut names = vec![];
        for_each_node_mut(&mut g.node, &mut |n| names.push(n.name.clone()));
        assert_eq!(names, ["top", "mid", "deep"]);
    }
}
