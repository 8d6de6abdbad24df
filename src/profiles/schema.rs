//! The profile schema: what `profiles/*.toml` hold (ops, rules and their sources), and the
//! [`Violation`] a broken rule yields.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

/// The name of the derived profile, and the default `--target`.
pub const PORTABLE: &str = "portable";

/// Every profile name, `portable` first.
pub const PROFILE_NAMES: [&str; 11] = [
    PORTABLE,
    "barracuda-1.0.4",
    "barracuda-2.0",
    "opencv-4.x",
    "tensorrt-8.4",
    "ort-web-webgl",
    "ncnn",
    "wonnx",
    "onnxruntime",
    "openvino",
    "mnn",
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
    /// What shows the profile right: a run of the rewritten models, or the documentation alone.
    pub proof: Proof,
    /// Where the runtime computes in a type narrower than float32 at its default settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub narrow_default: Option<NarrowDefault>,
    /// Decoder forms beyond the thin ops that the runtime runs right, each with what showed it.
    /// Only a proven profile's unlock them (`--target`); `portable` keeps the thin forms.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub richer_forms: Vec<RicherForm>,
}

/// A decoder form a runtime runs right (the `[[richer_forms]]` of a runtime file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RicherForm {
    pub form: RicherFormKind,
    /// The run that showed it.
    pub source: String,
}

/// The richer forms a profile may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RicherFormKind {
    /// ArgMax for "the first maximum" and GatherElements to read a map there:
    /// [`crate::decoders::Forms::ArgMaxGather`].
    ArgmaxGather,
}

/// A runtime's default arithmetic when narrower than float32 (the `[narrow_default]` table): the
/// single-pose decoder is exact there up to that type's rounding of positions, the multi-pose
/// decoder is not (its scaled indices need float32), so the rewrite and `inspect` name the
/// setting that makes the runtime compute in float32.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NarrowDefault {
    /// `float16` or `bfloat16`.
    pub arithmetic: String,
    /// Where the default applies (a device, a processor).
    pub applies: String,
    /// The setting that makes the runtime compute in float32 there.
    pub exact_with: String,
    pub source: String,
}

impl fmt::Display for NarrowDefault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "computes in {} by default {}", self.arithmetic, self.applies)
    }
}

/// What a profile's "accepts" rests on (the `[proof]` table of a runtime file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Proof {
    /// Rewritten models were run on the runtime and matched the reference.
    Proven {
        /// The runtime that ran them, its version, and what it ran on.
        runtime_version: String,
        /// What ran them: a conformance leg or check, or a run outside CI.
        how: String,
        /// Whether CI runs it (`.ci/run`). A run outside CI says what it showed in `evidence`.
        in_ci: bool,
        /// Single-pose decoders were run and matched.
        single_pose: bool,
        /// Multi-pose decoders (`--poses`) were run and matched.
        multi_pose: bool,
        /// The figures of a run outside CI.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evidence: Option<String>,
        /// What the runs left out (models skipped, settings changed from the runtime's defaults).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// Read from the runtime's documentation or source only: no run has checked it. It does not
    /// shape `portable`.
    DocumentationOnly {
        /// Why no run backs it.
        why: String,
    },
    /// A derived profile (`portable`): the intersection of the proven ones. Not for runtime files.
    Derived,
}

impl Proof {
    pub fn is_proven(&self) -> bool {
        matches!(self, Proof::Proven { .. })
    }
}

impl fmt::Display for Proof {
    /// One line: the status, what ran, and which decoders it covered.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proof::Proven { runtime_version, how, in_ci, single_pose, multi_pose, .. } => {
                let decoders = match (single_pose, multi_pose) {
                    (true, true) => "single and multi-pose",
                    (true, false) => "single pose only (multi-pose not proven)",
                    (false, true) => "multi-pose only (single pose not proven)",
                    (false, false) => "no decoder",
                };
                let ci = if *in_ci { "in CI" } else { "outside CI" };
                write!(f, "proven {ci} on {runtime_version}, {decoders}: {how}")
            }
            Proof::DocumentationOnly { why } => write!(f, "documentation only: {why}"),
            Proof::Derived => write!(f, "derived"),
        }
    }
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
    pub(super) fn contains(&self, opset: i64) -> bool {
        opset >= self.min && self.max.is_none_or(|hi| opset <= hi)
    }
}

/// An opset range in a profile that does not read as one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("opset range {text:?} is {problem}")]
pub struct OpsetRangeError {
    text: String,
    problem: &'static str,
}

impl TryFrom<String> for OpsetRange {
    type Error = OpsetRangeError;
    fn try_from(text: String) -> std::result::Result<Self, OpsetRangeError> {
        let error = |problem| OpsetRangeError { text: text.clone(), problem };
        let number = |t: &str| t.trim().parse::<i64>().map_err(|_| error("not lo-hi, lo+ or v"));
        let range = if let Some(lo) = text.strip_suffix('+') {
            OpsetRange { min: number(lo)?, max: None }
        } else if let Some((lo, hi)) = text.split_once('-') {
            OpsetRange { min: number(lo)?, max: Some(number(hi)?) }
        } else {
            let v = number(&text)?;
            OpsetRange { min: v, max: Some(v) }
        };
        match range.max {
            Some(hi) if hi < range.min => Err(error("empty")),
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
    /// A MatMul outside the shapes wonnx 0.5.1 multiplies right: operands of one rank and the
    /// same leading dims, and `K % 4 == 0` when `M == 1`, else `gcd(M, K, N)` 2, 3 or a multiple
    /// of 4.
    MatmulBlockShapes,
    /// A Concat with a dim other than 1 before its axis (wonnx 0.5.1 appends flat buffers).
    ConcatAfterNonUnitDims,
    /// A Clip bound that is not exact with one decimal (wonnx 0.5.1 prints it with `{:.1}`).
    ClipBoundsRounded,
    /// A MaxPool or AveragePool whose `kernel_shape` has a height other than its width: Barracuda
    /// 1.0.4's importer hands ONNX's (height, width) to a pool array ordered (x, y), so the window
    /// is transposed. (A Conv's kernel comes from its weights and is read right.)
    NonSquarePoolKernel,
    /// A pool or convolution whose `strides` differ in height and width: Barracuda 1.0.4's importer
    /// hands them, like the pool kernel, to an (x, y) array unswapped.
    NonSquareStrides,
    /// A Conv whose `dilations` differ in height and width: Barracuda 1.0.4 sizes the dilated
    /// kernel right but places its taps with the height's dilation along the width.
    NonSquareDilations,
    /// A MaxPool or AveragePool with no `strides` attribute: MNN 3.6.1's converter takes it for
    /// 0, not ONNX's default of 1, and divides by it.
    ImplicitPoolStrides,
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Pattern::DeletedNodeOutputRead => "no graph output read where the runtime deletes or fuses its writer",
            Pattern::ReshapeThenElementwise => {
                "no equal-shape element-wise op on a reshape that moves data between texture rows"
            }
            Pattern::MatmulBlockShapes => {
                "MatMul operands of one rank and leading dims, in blocks the runtime multiplies right"
            }
            Pattern::ConcatAfterNonUnitDims => "Concat only where every dim before the axis is 1",
            Pattern::ClipBoundsRounded => "Clip bounds exact with one decimal",
            Pattern::NonSquarePoolKernel => {
                "pool kernels as high as they are wide (the runtime swaps height and width)"
            }
            Pattern::NonSquareStrides => "strides equal in height and width (the runtime swaps them)",
            Pattern::NonSquareDilations => "dilations equal in height and width (the runtime misplaces the taps)",
            Pattern::ImplicitPoolStrides => "pool strides written out (the runtime takes a missing attribute for 0)",
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

pub(super) fn list<T: fmt::Display>(items: &[T], last: &str) -> String {
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
