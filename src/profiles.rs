//! What real runtimes accept, as data: one profile per runtime in `profiles/*.toml` (embedded in
//! the binary), each op and rule with its source, and the derived `portable` profile.
//!
//! A profile is a list of supported ops, rules on every node (`max_rank`, `opset`,
//! `graph_output_types`), rules on the nodes of some ops (`constant_input`, `input_rank`,
//! `reduce_axes`, `axes_attribute`, `axes_at_least`, `attribute_default`) and the ops worth naming
//! as unsupported. [`check_model`] judges nodes against one profile and returns one
//! [`Violation`] per broken rule.
//!
//! `portable` is computed when the profiles load, never written by hand: the ops every runtime
//! supports, with every rule of every runtime on them, except the rules a runtime file marks
//! `portable = false`. Those depend on what the rewrite cannot choose (the model's opset, the
//! heads' layout) and apply only when that runtime is targeted by name: Barracuda 1.0's
//! channel-axis-only reductions (NHWC heads need Barracuda 1.2 or later) and its attribute-only
//! `axes` (opsets before 13 and 18), and TensorRT 8.4's opset 13 ceiling.
//!
//! Rank and axis rules need the ranks of intermediate tensors: [`Facts::from_tract`] takes them
//! from tract's shape inference, [`Facts::propagate`] computes them statically from a few known
//! tensors (enough for the appended decoder). A rule whose facts are unknown is not judged.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;

use onnx_protobuf::attribute_proto::AttributeType;
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, GraphProto, ModelProto, NodeProto};
use protobuf::Enum;
use serde::{Deserialize, Serialize};
use tract_onnx::prelude::DatumType;

use crate::contract::NAME_PREFIX;
use crate::error::{Error, Result};
use crate::model_io;
use crate::proto;
use crate::tract_bridge::{self, TensorFacts};

/// The name of the derived profile, and the default `--target`.
pub const PORTABLE: &str = "portable";

/// Every profile name, `portable` first.
pub const PROFILE_NAMES: [&str; 5] = [PORTABLE, "barracuda-1.0.4", "barracuda-2.0", "opencv-4.x", "tensorrt-8.4"];

/// The runtime files, embedded so that `--target` works from anywhere.
const RUNTIME_FILES: [(&str, &str); 4] = [
    ("barracuda-1.0.4.toml", include_str!("../profiles/barracuda-1.0.4.toml")),
    ("barracuda-2.0.toml", include_str!("../profiles/barracuda-2.0.toml")),
    ("opencv-4.x.toml", include_str!("../profiles/opencv-4.x.toml")),
    ("tensorrt-8.4.toml", include_str!("../profiles/tensorrt-8.4.toml")),
];

/// A runtime profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub name: String,
    pub runtime: String,
    pub version: String,
    /// The page or file the profile is built from.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub supported: Supported,
    /// Rules on every node.
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Rules on the nodes of some ops.
    #[serde(default)]
    pub op_rules: Vec<OpRule>,
    /// Ops named as unsupported, with the source that says so.
    #[serde(default)]
    pub unsupported: BTreeMap<String, String>,
    /// The profiles a derived profile is computed from; empty for a runtime's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub derived_from: Vec<String>,
}

/// The ops a runtime imports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supported {
    pub source: String,
    pub ops: BTreeSet<String>,
}

/// A rule with where it comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(flatten)]
    pub kind: RuleKind,
    pub source: String,
    /// False when the rule is left out of the derived `portable` profile (`note` says why).
    #[serde(default = "yes")]
    pub portable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// In a derived profile, the runtime profiles the rule comes from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub origin: Vec<String>,
}

fn yes() -> bool {
    true
}

/// A rule on the nodes of `ops`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpRule {
    pub ops: Vec<String>,
    #[serde(flatten)]
    pub rule: Rule,
}

/// What a rule requires. Axes are normalized (negative axes counted from the end) before they
/// are compared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "rule", rename_all = "snake_case")]
pub enum RuleKind {
    /// Every input and output of the node has at most this rank.
    MaxRank { rank: usize },
    /// The model's default-domain opset is within the range.
    Opset {
        #[serde(default)]
        min: Option<i64>,
        #[serde(default)]
        max: Option<i64>,
    },
    /// Graph outputs written by the node have one of these ONNX element types
    /// (`float`, `int64`, ... as in `TensorProto.DataType`, lowercase).
    GraphOutputTypes { allowed: Vec<String> },
    /// Input `input`, when present, is an initializer or the output of a Constant node.
    ConstantInput { input: usize },
    /// Input `input`, when present, has one of these ranks.
    InputRank { input: usize, ranks: Vec<usize> },
    /// The node reduces a tensor of one of `input_ranks` over the `axes` only.
    ReduceAxes { axes: Vec<i64>, input_ranks: Vec<usize> },
    /// `axes` come as an attribute, not as an input.
    AxesAttribute,
    /// Every axis in `axes` is at least `min`.
    AxesAtLeast { min: i64 },
    /// The attribute is absent, or equal to `default` when one is given.
    AttributeDefault {
        name: String,
        #[serde(default)]
        default: Option<AttrValue>,
    },
    /// The runtime registers the op only for models whose default-domain opset lies in one of
    /// the ranges (`"1-12"`, `"13+"`, `"7"`), as onnxruntime-web resolves its kernels.
    RegisteredOpsets { ranges: Vec<OpsetRange> },
    /// No input or output of the node has one of these element types.
    ForbiddenTypes { types: Vec<String> },
    /// The node does not form a pattern the runtime is known to compute wrong.
    KnownWrong { pattern: Pattern },
}

/// A range of opsets, written `"lo-hi"`, `"lo+"` or `"v"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OpsetRange {
    pub min: i64,
    pub max: Option<i64>,
}

impl OpsetRange {
    fn contains(&self, opset: i64) -> bool {
        opset >= self.min && self.max.is_none_or(|hi| opset <= hi)
    }
}

impl TryFrom<String> for OpsetRange {
    type Error = String;
    fn try_from(text: String) -> std::result::Result<Self, String> {
        let number =
            |t: &str| t.trim().parse::<i64>().map_err(|_| format!("opset range {text:?} is not lo-hi, lo+ or v"));
        let range = if let Some(lo) = text.strip_suffix('+') {
            OpsetRange { min: number(lo)?, max: None }
        } else if let Some((lo, hi)) = text.split_once('-') {
            OpsetRange { min: number(lo)?, max: Some(number(hi)?) }
        } else {
            let v = number(&text)?;
            OpsetRange { min: v, max: Some(v) }
        };
        match range.max {
            Some(hi) if hi < range.min => Err(format!("opset range {text:?} is empty")),
            _ => Ok(range),
        }
    }
}

impl From<OpsetRange> for String {
    fn from(r: OpsetRange) -> String {
        r.to_string()
    }
}

impl fmt::Display for OpsetRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.max {
            None => write!(f, "{}+", self.min),
            Some(hi) if hi == self.min => write!(f, "{hi}"),
            Some(hi) => write!(f, "{}-{hi}", self.min),
        }
    }
}

/// Op patterns a runtime computes wrong although it supports each op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    /// onnxruntime-web's WebGL backend deletes Identity and Dropout nodes at load, and fuses a
    /// Relu, Sigmoid or Clip into a Conv output it alone reads. A node must not be such a fused
    /// activation on a graph output, nor read a graph output written by a deleted node or listed
    /// after one (those keep stale indices).
    DeletedNodeOutputRead,
    /// An element-wise op of equal input and output shapes reads a reshaped tensor whose 2-D
    /// texture (onnxruntime-web WebGL's, unpacked) differs from the one its shape gets.
    ReshapeThenElementwise,
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pattern::DeletedNodeOutputRead => "no graph output read where the runtime deletes or fuses its writer",
            Pattern::ReshapeThenElementwise => {
                "no equal-shape element-wise op on a reshape that moves data between texture rows"
            }
        })
    }
}

/// An attribute value in a profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    Int(i64),
    Float(f64),
    Ints(Vec<i64>),
    Text(String),
}

impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttrValue::Int(v) => write!(f, "{v}"),
            AttrValue::Float(v) => write!(f, "{v}"),
            AttrValue::Ints(v) => write!(f, "{v:?}"),
            AttrValue::Text(v) => write!(f, "{v:?}"),
        }
    }
}

fn list<T: fmt::Display>(items: &[T], last: &str) -> String {
    let items: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    match items.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., end] => format!("{} {last} {end}", rest.join(", ")),
    }
}

impl fmt::Display for RuleKind {
    /// The rule as a short requirement, quoted in violations.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleKind::MaxRank { rank } => write!(f, "tensors of rank {rank} or less"),
            RuleKind::Opset { min: Some(lo), max: Some(hi) } => write!(f, "opset {lo} to {hi}"),
            RuleKind::Opset { min: Some(lo), max: None } => write!(f, "opset {lo} or higher"),
            RuleKind::Opset { min: None, max: Some(hi) } => write!(f, "opset {hi} or lower"),
            RuleKind::Opset { min: None, max: None } => write!(f, "any opset"),
            RuleKind::GraphOutputTypes { allowed } => write!(f, "graph outputs of type {}", list(allowed, "or")),
            RuleKind::ConstantInput { input } => write!(f, "input {input} constant"),
            RuleKind::InputRank { input, ranks } => write!(f, "input {input} of rank {}", list(ranks, "or")),
            RuleKind::ReduceAxes { axes, input_ranks } => write!(
                f,
                "reductions only over axis {} of a rank-{} tensor",
                list(axes, "and"),
                list(input_ranks, "or")
            ),
            RuleKind::AxesAttribute => write!(f, "axes as an attribute, not an input"),
            RuleKind::AxesAtLeast { min } => write!(f, "axes {min} or higher"),
            RuleKind::AttributeDefault { name, default: None } => write!(f, "no attribute {name}"),
            RuleKind::AttributeDefault { name, default: Some(v) } => write!(f, "attribute {name} absent or {v}"),
            RuleKind::RegisteredOpsets { ranges } => write!(f, "registered for opsets {}", list(ranges, "and")),
            RuleKind::ForbiddenTypes { types } => write!(f, "no tensors of type {}", list(types, "or")),
            RuleKind::KnownWrong { pattern } => write!(f, "{pattern}"),
        }
    }
}

/// One rule a node (or the model as a whole) breaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The node's name (`writing X` when it has none); `None` for a rule on the whole model.
    pub node: Option<String>,
    pub op: Option<String>,
    pub profile: String,
    /// The rule, as a short requirement.
    pub rule: String,
    /// What the node does that breaks it.
    pub detail: String,
    pub source: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.node, &self.op) {
            (Some(node), Some(op)) => write!(f, "node {node} ({op}): ")?,
            (Some(node), None) => write!(f, "node {node}: ")?,
            _ => write!(f, "model: ")?,
        }
        write!(f, "{} breaks \"{}\" of {} ({})", self.detail, self.rule, self.profile, self.source)
    }
}

impl Profile {
    /// Every profile: `portable` first, then the runtimes in [`PROFILE_NAMES`] order.
    pub fn all() -> Result<Vec<Profile>> {
        let runtimes =
            RUNTIME_FILES.iter().map(|(file, text)| Profile::parse(file, text)).collect::<Result<Vec<_>>>()?;
        let mut all = vec![Profile::intersection(PORTABLE, &runtimes)];
        all.extend(runtimes);
        Ok(all)
    }

    /// The profile called `name` (one of [`PROFILE_NAMES`]).
    pub fn by_name(name: &str) -> Result<Profile> {
        Profile::all()?.into_iter().find(|p| p.name == name).ok_or_else(|| {
            Error::Usage(format!("unknown profile {name}; the profiles are: {}", PROFILE_NAMES.join(", ")))
        })
    }

    /// Reads and checks a runtime file: the name matches the file, every entry has a source, every
    /// op a rule names is supported, no op is both supported and unsupported.
    pub fn parse(file: &str, text: &str) -> Result<Profile> {
        let bad = |why: String| Error::Unsupported(format!("profile {file} is malformed: {why}"));
        let profile: Profile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        if file.strip_suffix(".toml") != Some(profile.name.as_str()) {
            return Err(bad(format!("it is called {}", profile.name)));
        }
        if !profile.derived_from.is_empty() {
            return Err(bad("a runtime file cannot be derived".into()));
        }
        let rules = profile.rules.iter().chain(profile.op_rules.iter().map(|r| &r.rule));
        for rule in rules {
            if rule.source.trim().is_empty() {
                return Err(bad(format!("rule \"{}\" has no source", rule.kind)));
            }
            if !rule.portable && rule.note.is_none() {
                return Err(bad(format!("rule \"{}\" is left out of portable without a note saying why", rule.kind)));
            }
        }
        for r in &profile.op_rules {
            if let Some(op) = r.ops.iter().find(|op| !profile.supported.ops.contains(*op)) {
                return Err(bad(format!("rule \"{}\" names {op}, which is not a supported op", r.rule.kind)));
            }
        }
        if let Some(op) = profile.unsupported.keys().find(|op| profile.supported.ops.contains(*op)) {
            return Err(bad(format!("{op} is both supported and unsupported")));
        }
        if let Some((op, _)) = profile.unsupported.iter().find(|(_, source)| source.trim().is_empty()) {
            return Err(bad(format!("unsupported {op} has no source")));
        }
        if profile.source.trim().is_empty() || profile.supported.source.trim().is_empty() {
            return Err(bad("no source".into()));
        }
        Ok(profile)
    }

    /// The profile every one of `runtimes` accepts: the ops all of them support, and all their
    /// rules that are not marked `portable = false` (merged when two runtimes state the same).
    pub fn intersection(name: &str, runtimes: &[Profile]) -> Profile {
        let names: Vec<String> = runtimes.iter().map(|p| p.name.clone()).collect();
        let ops: BTreeSet<String> = match runtimes.split_first() {
            Some((first, rest)) => first
                .supported
                .ops
                .iter()
                .filter(|op| rest.iter().all(|p| p.supported.ops.contains(*op)))
                .cloned()
                .collect(),
            None => BTreeSet::new(),
        };
        let mut rules: Vec<Rule> = Vec::new();
        let mut op_rules: Vec<OpRule> = Vec::new();
        for p in runtimes {
            for rule in p.rules.iter().filter(|r| r.portable) {
                merge_rule(&mut rules, rule, &p.name);
            }
            for r in p.op_rules.iter().filter(|r| r.rule.portable) {
                let kept: Vec<String> = r.ops.iter().filter(|op| ops.contains(*op)).cloned().collect();
                for op in kept {
                    let existing = op_rules.iter_mut().find(|o| o.ops == [op.clone()] && o.rule.kind == r.rule.kind);
                    match existing {
                        Some(o) => merge_origin(&mut o.rule, &r.rule, &p.name),
                        None => op_rules.push(OpRule { ops: vec![op], rule: with_origin(&r.rule, &p.name) }),
                    }
                }
            }
        }
        // Every op some runtime knows but another lacks, with who lacks it.
        let known: BTreeSet<&String> =
            runtimes.iter().flat_map(|p| p.supported.ops.iter().chain(p.unsupported.keys())).collect();
        let unsupported = known
            .into_iter()
            .filter(|op| !ops.contains(*op))
            .map(|op| {
                let lacking: Vec<String> = runtimes
                    .iter()
                    .filter(|p| !p.supported.ops.contains(op))
                    .map(|p| match p.unsupported.get(op) {
                        Some(source) => format!("{} ({source})", p.name),
                        None => format!("{} (not in {})", p.name, p.supported.source),
                    })
                    .collect();
                (op.clone(), format!("not supported by {}", lacking.join("; ")))
            })
            .collect();
        Profile {
            name: name.to_string(),
            runtime: format!("every runtime profiled ({})", names.join(", ")),
            version: "derived".to_string(),
            source: format!("the intersection of {}", names.join(", ")),
            note: Some(
                "Rules that depend on the model's opset or the heads' layout are left out; target a runtime by name \
                 to check them."
                    .to_string(),
            ),
            supported: Supported { source: format!("the ops supported by all of {}", names.join(", ")), ops },
            rules,
            op_rules,
            unsupported,
            derived_from: names,
        }
    }

    /// Every rule that applies to a node of `op`: the profile-wide ones, then the op's own.
    pub fn rules_for<'a>(&'a self, op: &'a str) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().chain(self.op_rules.iter().filter(move |r| r.ops.iter().any(|o| o == op)).map(|r| &r.rule))
    }

    /// Every source the profile cites: of the op list, each rule and each unsupported op.
    pub fn sources(&self) -> Vec<&str> {
        let mut sources = vec![self.source.as_str(), self.supported.source.as_str()];
        sources.extend(self.rules.iter().chain(self.op_rules.iter().map(|r| &r.rule)).map(|r| r.source.as_str()));
        sources.extend(self.unsupported.values().map(String::as_str));
        sources
    }
}

fn with_origin(rule: &Rule, origin: &str) -> Rule {
    Rule { origin: vec![origin.to_string()], ..rule.clone() }
}

fn merge_origin(into: &mut Rule, rule: &Rule, origin: &str) {
    into.origin.push(origin.to_string());
    into.source = format!("{}; {}", into.source, rule.source);
}

fn merge_rule(rules: &mut Vec<Rule>, rule: &Rule, origin: &str) {
    match rules.iter_mut().find(|r| r.kind == rule.kind) {
        Some(existing) => merge_origin(existing, rule, origin),
        None => rules.push(with_origin(rule, origin)),
    }
}

/// Ranks and element types of a model's tensors, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    ranks: HashMap<String, usize>,
    types: HashMap<String, String>,
    /// Dims where known, `None` for a symbolic or unknown one.
    dims: HashMap<String, Vec<Option<usize>>>,
}

impl Facts {
    /// Every tensor tract's shape inference names, with `pins` fixing input shapes.
    pub fn from_tract(bytes: &[u8], pins: &[(String, Vec<usize>)]) -> Result<Facts> {
        Ok(Facts::from_tensors(&tract_bridge::infer_tensor_facts(bytes, pins)?))
    }

    /// Facts of the given tensors only.
    pub fn from_tensors(tensors: &[TensorFacts]) -> Facts {
        let mut facts = Facts::default();
        for t in tensors {
            facts.insert(t);
        }
        facts
    }

    /// Facts computed without tract, from `known` tensors, the initializers and the declared
    /// inputs and outputs, through the ops whose output rank follows from their inputs'
    /// (elementwise ops, Reshape against a constant shape, reductions, Concat, MatMul...).
    /// Enough for the appended decoder given the facts of the heads.
    pub fn propagate(model: &ModelProto, known: &[TensorFacts]) -> Facts {
        let mut facts = Facts::default();
        let Some(graph) = model.graph.as_ref() else { return facts };
        for vi in graph.input.iter().chain(&graph.output).chain(&graph.value_info) {
            if let Some((elem, dims)) = proto::declared_tensor(vi) {
                if let Some(dims) = dims {
                    facts.ranks.insert(vi.name.clone(), dims.len());
                    facts.dims.insert(vi.name.clone(), dims.iter().map(known_dim).collect());
                }
                if let Some(name) = type_name(elem) {
                    facts.types.insert(vi.name.clone(), name);
                }
            }
        }
        for t in known {
            facts.insert(t);
        }
        for t in &graph.initializer {
            facts.ranks.insert(t.name.clone(), t.dims.len());
            if let Some(name) = type_name(t.data_type) {
                facts.types.insert(t.name.clone(), name);
            }
        }
        let constants = Constants::of(graph);
        for node in &graph.node {
            facts.infer(node, &constants);
        }
        facts
    }

    fn insert(&mut self, t: &TensorFacts) {
        if let Some(shape) = &t.shape {
            self.ranks.insert(t.name.clone(), shape.len());
            self.dims.insert(t.name.clone(), shape.iter().map(known_dim).collect());
        }
        if let Some(dt) = t.datum_type {
            self.types.insert(t.name.clone(), datum_type_name(dt));
        }
    }

    pub fn rank(&self, tensor: &str) -> Option<usize> {
        self.ranks.get(tensor).copied()
    }

    /// The dims of a tensor, `None` for each one unknown or symbolic.
    pub fn dims(&self, tensor: &str) -> Option<&[Option<usize>]> {
        self.dims.get(tensor).map(Vec::as_slice)
    }

    /// The ONNX element type name (`float`, `int64`, ...).
    pub fn element_type(&self, tensor: &str) -> Option<&str> {
        self.types.get(tensor).map(String::as_str)
    }

    /// The output rank of one node from its inputs', when its op makes that plain.
    fn infer(&mut self, node: &NodeProto, constants: &Constants) {
        let Some(out) = node.output.first().filter(|o| !o.is_empty()) else { return };
        let input = |ix: usize| node.input.get(ix).filter(|i| !i.is_empty());
        let rank_of = |ix: usize| input(ix).and_then(|i| self.rank(i));
        let inputs_max =
            || node.input.iter().filter(|i| !i.is_empty()).map(|i| self.rank(i)).collect::<Option<Vec<_>>>();
        let rank = match node.op_type.as_str() {
            "Reshape" => input(1).and_then(|s| constants.dims(s)).and_then(|d| d.first().map(|n| *n as usize)),
            "ReduceMax" | "ReduceMin" | "ReduceSum" | "ReduceMean" | "ReduceProd" | "ReduceL1" | "ReduceL2"
            | "ReduceLogSum" | "ReduceLogSumExp" | "ReduceSumSquare" => {
                let keep = proto::get_attr_int(node, "keepdims").unwrap_or(1) == 1;
                match (keep, rank_of(0), axes_of(node, constants)) {
                    (true, r, _) => r,
                    (false, Some(r), Some(axes)) => r.checked_sub(axes.len()),
                    (false, Some(_), None) => Some(0),
                    _ => None,
                }
            }
            "Concat" | "Identity" | "Cast" | "Sigmoid" | "Relu" | "GlobalMaxPool" | "MaxPool" | "Conv" | "Tanh"
            | "Exp" | "Log" | "Neg" | "Abs" | "Sqrt" | "Not" | "Clip" | "Softmax" | "Dropout" => rank_of(0),
            "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Equal" | "Greater" | "Less" | "And" | "Or" | "Xor" | "Max"
            | "Min" | "Sum" | "Where" | "MatMul" => inputs_max().and_then(|r| r.into_iter().max()),
            _ => None,
        };
        if let Some(rank) = rank {
            self.ranks.insert(out.clone(), rank);
        }
        if node.op_type == "Reshape" {
            if let Some(dims) = self.reshaped_dims(node, constants) {
                self.dims.insert(out.clone(), dims);
            }
        }
        let ty = match node.op_type.as_str() {
            "Cast" => proto::get_attr_int(node, "to").and_then(|t| type_name(t as i32)),
            "Equal" | "Greater" | "Less" | "Not" | "And" | "Or" | "Xor" => Some("bool".to_string()),
            "Reshape" | "Concat" | "Identity" | "Add" | "Sub" | "Mul" | "Div" | "Sigmoid" | "MatMul" | "ReduceMax"
            | "ReduceSum" | "ReduceMin" | "ReduceMean" | "Relu" | "Max" | "Min" | "GlobalMaxPool" | "MaxPool"
            | "Conv" | "Clip" => input(0).and_then(|i| self.element_type(i)).map(str::to_string),
            _ => None,
        };
        if let Some(ty) = ty {
            self.types.insert(out.clone(), ty);
        }
    }
}

impl Facts {
    /// The output dims of a Reshape against a constant shape (0 copies an input dim; one -1
    /// takes what is left, when the input's dims are all known).
    fn reshaped_dims(&self, node: &NodeProto, constants: &Constants) -> Option<Vec<Option<usize>>> {
        let target = constants.i64_values(node.input.get(1)?)?;
        let input = self.dims(node.input.first()?);
        let mut dims: Vec<Option<usize>> = target
            .iter()
            .enumerate()
            .map(|(ix, &d)| match d {
                0 => input.and_then(|i| i.get(ix).copied().flatten()),
                d if d > 0 => Some(d as usize),
                _ => None,
            })
            .collect();
        if let (Some(free), Some(input)) = (target.iter().position(|&d| d == -1), input) {
            let total: Option<usize> = input.iter().copied().product();
            let known: Option<usize> = dims.iter().enumerate().filter(|(ix, _)| *ix != free).map(|(_, d)| *d).product();
            dims[free] = total.zip(known).and_then(|(t, k)| (k > 0).then(|| t / k));
        }
        Some(dims)
    }
}

fn known_dim(d: &proto::Dim) -> Option<usize> {
    match d {
        proto::Dim::Fixed(v) => usize::try_from(*v).ok(),
        proto::Dim::Symbol(_) | proto::Dim::Unknown => None,
    }
}

fn dims_text(dims: &[Option<usize>]) -> String {
    let dims: Vec<String> = dims.iter().map(|d| d.map_or("?".to_string(), |v| v.to_string())).collect();
    format!("[{}]", dims.join(", "))
}

/// Element-wise ops, for the patterns that concern them.
const ELEMENTWISE: [&str; 12] =
    ["Add", "Sub", "Mul", "Div", "Max", "Min", "Relu", "Sigmoid", "Neg", "Abs", "Clip", "Pow"];

/// The ONNX name of an element type: `TensorProto.DataType` lowercase.
fn type_name(elem: i32) -> Option<String> {
    DataType::from_i32(elem).filter(|d| *d != DataType::UNDEFINED).map(|d| format!("{d:?}").to_lowercase())
}

/// The ONNX name of a tract datum type.
pub fn datum_type_name(dt: DatumType) -> String {
    match dt {
        DatumType::F32 => "float",
        DatumType::F16 => "float16",
        DatumType::F64 => "double",
        DatumType::I64 => "int64",
        DatumType::I32 => "int32",
        DatumType::I16 => "int16",
        DatumType::I8 => "int8",
        DatumType::U64 => "uint64",
        DatumType::U32 => "uint32",
        DatumType::U16 => "uint16",
        DatumType::U8 => "uint8",
        DatumType::Bool => "bool",
        DatumType::String => "string",
        other => return format!("{other:?}").to_lowercase(),
    }
    .to_string()
}

/// The tensors of a graph whose values are known before it runs.
struct Constants<'a> {
    initializers: HashMap<&'a str, &'a onnx_protobuf::TensorProto>,
    constant_nodes: HashMap<&'a str, &'a NodeProto>,
}

impl<'a> Constants<'a> {
    fn of(graph: &'a GraphProto) -> Constants<'a> {
        Constants {
            initializers: graph.initializer.iter().map(|t| (t.name.as_str(), t)).collect(),
            constant_nodes: graph
                .node
                .iter()
                .filter(|n| n.op_type == "Constant")
                .flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n)))
                .collect(),
        }
    }

    fn contains(&self, tensor: &str) -> bool {
        self.initializers.contains_key(tensor) || self.constant_nodes.contains_key(tensor)
    }

    fn dims(&self, tensor: &str) -> Option<Vec<i64>> {
        if let Some(t) = self.initializers.get(tensor) {
            return Some(t.dims.clone());
        }
        let value = self.constant_nodes.get(tensor)?.attribute.iter().find(|a| a.name == "value")?;
        value.t.as_ref().map(|t| t.dims.clone())
    }

    /// The values of an int64 constant (an initializer or a Constant node's `value`); `None` for
    /// an initializer whose data a structure-only read left out.
    fn i64_values(&self, tensor: &str) -> Option<Vec<i64>> {
        if let Some(t) = self.initializers.get(tensor) {
            return model_io::has_data(t).then(|| proto::tensor_i64_values(t)).flatten();
        }
        let value = self.constant_nodes.get(tensor)?.attribute.iter().find(|a| a.name == "value")?;
        value.t.as_ref().and_then(proto::tensor_i64_values)
    }
}

/// The `axes` of a node, from the attribute or a constant second input; `None` when absent or
/// computed at run time.
fn axes_of(node: &NodeProto, constants: &Constants) -> Option<Vec<i64>> {
    if let Some(axes) = node.attribute.iter().find(|a| a.name == "axes") {
        return Some(axes.ints.clone());
    }
    node.input.get(1).filter(|i| !i.is_empty()).and_then(|i| constants.i64_values(i))
}

fn axes_input(node: &NodeProto) -> Option<&String> {
    node.input.get(1).filter(|i| !i.is_empty())
}

/// Everything a rule may look at besides the node.
struct Context<'a> {
    opset: Option<i64>,
    facts: &'a Facts,
    constants: Constants<'a>,
    graph_outputs: HashSet<&'a str>,
    /// The node writing each tensor.
    producers: HashMap<&'a str, &'a NodeProto>,
    /// How many node inputs read each tensor.
    readers: HashMap<&'a str, usize>,
    /// The graph outputs in their declared order.
    output_order: Vec<&'a str>,
}

impl Context<'_> {
    /// The dims of a tensor when all are known: from the facts, or a constant's.
    fn dims_of(&self, tensor: &str) -> Option<Vec<usize>> {
        match self.facts.dims(tensor) {
            Some(dims) => dims.iter().copied().collect(),
            None => self.constants.dims(tensor).map(|d| d.iter().map(|v| *v as usize).collect()),
        }
    }

    /// The rank of a tensor, from the facts or, for constants, their dims.
    fn rank(&self, tensor: &str) -> Option<usize> {
        self.facts.rank(tensor).or_else(|| self.constants.dims(tensor).map(|d| d.len()))
    }
}

fn node_label(node: &NodeProto) -> String {
    match (node.name.is_empty(), node.output.first()) {
        (false, _) => node.name.clone(),
        (true, Some(out)) => format!("writing {out}"),
        (true, None) => "(unnamed)".to_string(),
    }
}

fn attribute_matches(a: &AttributeProto, v: &AttrValue) -> bool {
    match (a.type_.enum_value(), v) {
        (Ok(AttributeType::INT), AttrValue::Int(x)) => a.i == *x,
        (Ok(AttributeType::FLOAT), AttrValue::Float(x)) => (a.f as f64 - x).abs() < 1e-6,
        (Ok(AttributeType::FLOAT), AttrValue::Int(x)) => (a.f as f64 - *x as f64).abs() < 1e-6,
        (Ok(AttributeType::INTS), AttrValue::Ints(x)) => a.ints == *x,
        (Ok(AttributeType::STRING), AttrValue::Text(x)) => a.s == x.as_bytes(),
        _ => false,
    }
}

fn attribute_text(a: &AttributeProto) -> String {
    match a.type_.enum_value() {
        Ok(AttributeType::INT) => a.i.to_string(),
        Ok(AttributeType::FLOAT) => a.f.to_string(),
        Ok(AttributeType::INTS) => format!("{:?}", a.ints),
        Ok(AttributeType::STRING) => format!("{:?}", String::from_utf8_lossy(&a.s)),
        _ => "set".to_string(),
    }
}

impl RuleKind {
    /// Whether the rule is about the model rather than any one node (judged once).
    fn is_model_wide(&self) -> bool {
        matches!(self, RuleKind::Opset { .. })
    }

    /// What the node does that breaks the rule, or `None` when it keeps it (or when the facts to
    /// judge it are missing).
    fn judge(&self, node: &NodeProto, cx: &Context) -> Option<String> {
        let input = |ix: usize| node.input.get(ix).filter(|i| !i.is_empty());
        match self {
            RuleKind::MaxRank { rank } => {
                let (name, r) = node
                    .input
                    .iter()
                    .chain(&node.output)
                    .filter(|t| !t.is_empty())
                    .find_map(|t| cx.rank(t).filter(|r| r > rank).map(|r| (t, r)))?;
                Some(format!("{name} has rank {r}"))
            }
            RuleKind::Opset { min, max } => {
                let opset = cx.opset?;
                let outside = min.is_some_and(|lo| opset < lo) || max.is_some_and(|hi| opset > hi);
                outside.then(|| format!("the model's opset {opset}"))
            }
            RuleKind::GraphOutputTypes { allowed } => {
                node.output.iter().filter(|o| cx.graph_outputs.contains(o.as_str())).find_map(|o| {
                    let ty = cx.facts.element_type(o)?;
                    (!allowed.iter().any(|a| a == ty)).then(|| format!("graph output {o} of type {ty}"))
                })
            }
            RuleKind::ConstantInput { input: ix } => {
                let name = input(*ix)?;
                (!cx.constants.contains(name)).then(|| format!("input {ix} ({name}) computed at run time"))
            }
            RuleKind::InputRank { input: ix, ranks } => {
                let name = input(*ix)?;
                let r = cx.rank(name)?;
                (!ranks.contains(&r)).then(|| format!("input {ix} ({name}) of rank {r}"))
            }
            RuleKind::ReduceAxes { axes, input_ranks } => {
                let data = input(0)?;
                let r = cx.rank(data)?;
                if !input_ranks.contains(&r) {
                    return Some(format!("a reduction of {data}, of rank {r},"));
                }
                let Some(reduced) = axes_of(node, &cx.constants) else {
                    if axes_input(node).is_some() {
                        return None;
                    }
                    return Some(format!("a reduction of {data} over all its axes"));
                };
                let normalized: Vec<i64> = reduced.iter().map(|a| if *a < 0 { a + r as i64 } else { *a }).collect();
                let off: Vec<i64> = normalized.into_iter().filter(|a| !axes.contains(a)).collect();
                (!off.is_empty()).then(|| format!("a reduction of {data} over axis {}", list(&off, "and")))
            }
            RuleKind::AxesAttribute => axes_input(node).map(|axes| format!("axes as input 1 ({axes})")),
            RuleKind::AxesAtLeast { min } => {
                let axes = axes_of(node, &cx.constants)?;
                // Unsqueeze counts negative axes in its output, Squeeze in its input.
                let rank = cx.rank(input(0)?).map(|r| if node.op_type == "Unsqueeze" { r + axes.len() } else { r });
                let low: Vec<i64> = axes
                    .iter()
                    .filter_map(|a| match (*a < 0, rank) {
                        (true, Some(r)) => Some(a + r as i64),
                        (true, None) => None,
                        (false, _) => Some(*a),
                    })
                    .filter(|a| a < min)
                    .collect();
                (!low.is_empty()).then(|| format!("axis {}", list(&low, "and")))
            }
            RuleKind::AttributeDefault { name, default } => {
                let a = node.attribute.iter().find(|a| &a.name == name)?;
                match default {
                    Some(v) if attribute_matches(a, v) => None,
                    _ => Some(format!("attribute {name} = {}", attribute_text(a))),
                }
            }
            RuleKind::RegisteredOpsets { ranges } => {
                let opset = cx.opset?;
                (!ranges.iter().any(|r| r.contains(opset)))
                    .then(|| format!("{} at the model's opset {opset}", node.op_type))
            }
            RuleKind::ForbiddenTypes { types } => {
                node.input.iter().chain(&node.output).filter(|t| !t.is_empty()).find_map(|t| {
                    let ty = cx.facts.element_type(t)?;
                    types.iter().any(|f| f == ty).then(|| format!("{t} of type {ty}"))
                })
            }
            RuleKind::KnownWrong { pattern: Pattern::DeletedNodeOutputRead } => deleted_node_output_read(node, cx),
            RuleKind::KnownWrong { pattern: Pattern::ReshapeThenElementwise } => reshape_then_elementwise(node, cx),
        }
    }
}

/// Ops onnxruntime-web's WebGL backend fuses into the Conv before them (`Graph.isActivation`).
const WEBGL_FUSED: [&str; 3] = ["Relu", "Sigmoid", "Clip"];

/// Whether WebGL removes `node` at load: Identity and Dropout always, a Relu, Sigmoid or Clip
/// when it alone reads a Conv output (fused into it).
fn webgl_deletes(node: &NodeProto, cx: &Context) -> bool {
    match node.op_type.as_str() {
        "Identity" | "Dropout" => true,
        op if WEBGL_FUSED.contains(&op) => node.input.first().is_some_and(|i| {
            cx.producers.get(i.as_str()).is_some_and(|p| p.op_type == "Conv") && cx.readers.get(i.as_str()) == Some(&1)
        }),
        _ => false,
    }
}

fn deleted_node_output_read(node: &NodeProto, cx: &Context) -> Option<String> {
    if WEBGL_FUSED.contains(&node.op_type.as_str()) && webgl_deletes(node, cx) {
        let conv = node.input.first().and_then(|i| cx.producers.get(i.as_str())).map(|p| node_label(p));
        let input = node.input.first().map(String::as_str).unwrap_or_default();
        if cx.graph_outputs.contains(input) {
            return Some(format!(
                "fused into {} at load, whose output is graph output {input}",
                conv.unwrap_or_default()
            ));
        }
    }
    node.input.iter().find_map(|i| {
        let position = cx.output_order.iter().position(|o| o == i)?;
        cx.output_order[..=position].iter().find_map(|earlier| {
            let writer = cx.producers.get(*earlier).filter(|w| webgl_deletes(w, cx))?;
            Some(format!(
                "reading graph output {i}, {} by {} ({}), which the runtime removes at load",
                if earlier == i { "written".to_string() } else { format!("listed after {earlier}, written") },
                node_label(writer),
                writer.op_type
            ))
        })
    })
}

/// The unpacked 2-D texture onnxruntime-web's WebGL backend stores a tensor of `dims` in, for
/// a largest texture side `max` (`PreferLogicalStrategy.computeTexture`).
fn webgl_texture(dims: &[usize], max: usize) -> [usize; 2] {
    let dims: Vec<usize> =
        if dims.len() == 2 { dims.to_vec() } else { dims.iter().copied().filter(|d| *d != 1).collect() };
    let n: usize = dims.iter().product();
    let fits = |t: [usize; 2]| t[0] <= max && t[1] <= max;
    let candidates: Vec<[usize; 2]> = match dims.as_slice() {
        [] => vec![[1, 1]],
        [a] => vec![[1, *a]],
        [a, b] => vec![[*a, *b]],
        [a, b, c] => vec![[a * b, *c], [*a, b * c]],
        [a, b, c, d] => vec![[a * b * c, *d], [*a, b * c * d]],
        _ => vec![],
    };
    candidates.into_iter().find(|t| fits(*t)).unwrap_or_else(|| {
        let w = (n as f64).sqrt().ceil() as usize;
        [w, n.div_ceil(w.max(1))]
    })
}

fn reshape_then_elementwise(node: &NodeProto, cx: &Context) -> Option<String> {
    if !ELEMENTWISE.contains(&node.op_type.as_str()) {
        return None;
    }
    let inputs: Vec<&String> = node.input.iter().filter(|i| !i.is_empty()).collect();
    inputs.iter().find_map(|i| {
        let reshape = cx.producers.get(i.as_str()).filter(|p| RELABELS.contains(&p.op_type.as_str()))?;
        let after: Vec<usize> = cx.facts.dims(i)?.iter().copied().collect::<Option<_>>()?;
        // A broadcasting op indexes its inputs by element and reads them right; an input of
        // unknown dims counts as one of equal dims.
        let broadcasts = inputs.iter().any(|o| cx.dims_of(o).is_some_and(|d| d != after));
        if broadcasts {
            return None;
        }
        // The data keeps the texture of the tensor before the chain of relabelling ops.
        let mut source = reshape.input.first()?;
        for _ in 0..cx.producers.len() {
            match cx.producers.get(source.as_str()) {
                Some(p) if RELABELS.contains(&p.op_type.as_str()) => source = p.input.first()?,
                _ => break,
            }
        }
        let before = cx.dims_of(source)?;
        // Texture sides of 4096 (some phones), 8192 (SwiftShader) and 16384 (most desktops).
        let differs =
            [4096, 8192, 16384].into_iter().find(|m| webgl_texture(&before, *m) != webgl_texture(&after, *m))?;
        Some(format!(
            "reading {i}, relabelled by {} from {} (texture {:?}) to {} (texture {:?} for a side of {differs})",
            node_label(reshape),
            dims_text(&before.iter().map(|d| Some(*d)).collect::<Vec<_>>()),
            webgl_texture(&before, differs),
            dims_text(&after.iter().map(|d| Some(*d)).collect::<Vec<_>>()),
            webgl_texture(&after, differs),
        ))
    })
}

/// Ops that change a tensor's shape without moving its data.
const RELABELS: [&str; 4] = ["Reshape", "Flatten", "Squeeze", "Unsqueeze"];

/// The rules of `profile` broken by the nodes of `model` that `select` picks, in graph order,
/// after the rules on the whole model (judged when any node is picked). Rules needing facts
/// `facts` lacks are not judged.
pub fn check_model(
    model: &ModelProto,
    facts: &Facts,
    profile: &Profile,
    select: impl Fn(&NodeProto) -> bool,
) -> Vec<Violation> {
    let Some(graph) = model.graph.as_ref() else { return vec![] };
    let cx = Context {
        opset: crate::rewrite::default_opset(model),
        facts,
        constants: Constants::of(graph),
        graph_outputs: graph.output.iter().map(|o| o.name.as_str()).collect(),
        producers: graph.node.iter().flat_map(|n| n.output.iter().map(move |o| (o.as_str(), n))).collect(),
        readers: graph.node.iter().flat_map(|n| &n.input).filter(|i| !i.is_empty()).fold(HashMap::new(), |mut m, i| {
            *m.entry(i.as_str()).or_insert(0) += 1;
            m
        }),
        output_order: graph.output.iter().map(|o| o.name.as_str()).collect(),
    };
    let source_of = |rule: &Rule| match rule.origin.as_slice() {
        [] => rule.source.clone(),
        origins => format!("from {}: {}", origins.join(", "), rule.source),
    };
    let violation = |node: Option<&NodeProto>, rule: String, detail: String, source: String| Violation {
        node: node.map(node_label),
        op: node.map(|n| n.op_type.clone()),
        profile: profile.name.clone(),
        rule,
        detail,
        source,
    };
    let selected: Vec<&NodeProto> = graph.node.iter().filter(|n| select(n)).collect();
    let mut violations = Vec::new();
    if let Some(first) = selected.first() {
        for rule in profile.rules.iter().filter(|r| r.kind.is_model_wide()) {
            if let Some(detail) = rule.kind.judge(first, &cx) {
                violations.push(violation(None, rule.kind.to_string(), detail, source_of(rule)));
            }
        }
    }
    for node in selected {
        let op = node.op_type.as_str();
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            let detail = format!("an op of domain {}", node.domain);
            violations.push(violation(
                Some(node),
                "default-domain ops only".into(),
                detail,
                profile.supported.source.clone(),
            ));
            continue;
        }
        if !profile.supported.ops.contains(op) {
            let source =
                profile.unsupported.get(op).cloned().unwrap_or_else(|| format!("not in {}", profile.supported.source));
            violations.push(violation(
                Some(node),
                "supported ops only".into(),
                format!("{op} is not supported"),
                source,
            ));
            continue;
        }
        for rule in profile.rules_for(op).filter(|r| !r.kind.is_model_wide()) {
            if let Some(detail) = rule.kind.judge(node, &cx) {
                violations.push(violation(Some(node), rule.kind.to_string(), detail, source_of(rule)));
            }
        }
    }
    violations
}

/// Whether a node was appended by the rewrite.
pub fn is_decoder_node(node: &NodeProto) -> bool {
    node.name.starts_with(NAME_PREFIX)
}

/// Checks the decoder of a rewritten model (its `posefix/` nodes) against `profile`. `heads` are
/// tract's facts of the original model's outputs (the heads the decoder reads); every other
/// rank follows from the decoder's own constants. `Err` lists every broken rule.
pub fn check_decoder(model: &ModelProto, heads: &[TensorFacts], profile: &Profile) -> Result<()> {
    let facts = Facts::propagate(model, heads);
    let violations = check_model(model, &facts, profile, is_decoder_node);
    if violations.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = violations.iter().map(|v| v.to_string()).collect();
    Err(Error::Unsupported(format!(
        "the decoder for this model would break target {}: {}{}",
        profile.name,
        lines.join("; "),
        match profile.name.as_str() {
            PORTABLE => String::new(),
            _ => format!(
                " (the default target {PORTABLE} leaves out the rules that depend on the model's opset or layout)"
            ),
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_read_as_requirements() {
        let rule = RuleKind::ReduceAxes { axes: vec![1], input_ranks: vec![2] };
        assert_eq!(rule.to_string(), "reductions only over axis 1 of a rank-2 tensor");
        assert_eq!(RuleKind::InputRank { input: 0, ranks: vec![4, 5] }.to_string(), "input 0 of rank 4 or 5");
        let attr = RuleKind::AttributeDefault { name: "axis".into(), default: Some(AttrValue::Int(1)) };
        assert_eq!(attr.to_string(), "attribute axis absent or 1");
    }

    #[test]
    fn a_rule_kind_parses_from_its_flat_form() {
        let text = "ops = [\"Squeeze\"]\nrule = \"axes_at_least\"\nmin = 2\nsource = \"docs\"\n";
        let r: OpRule = toml::from_str(text).unwrap();
        assert_eq!(r.rule.kind, RuleKind::AxesAtLeast { min: 2 });
        assert!(r.rule.portable);
    }
}
