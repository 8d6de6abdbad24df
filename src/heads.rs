//! Finding the pose heads among a model's outputs, the image input, and the output stride.
//!
//! Heads are recognised by shape: rank 4, float, 17 channels (heatmaps) or 34 (offsets) on the
//! channel axis of either layout, with the two sharing layout, batch and grid. Where shapes allow
//! more than one reading (a 257 input gives a `17x17x17` heatmap that fits both layouts), the other
//! head and then the names decide; if they cannot, the caller is told which flags settle it.

use onnx_protobuf::GraphProto;
use tract_onnx::prelude::DatumType;

use crate::contract::{DecoderSettings, FloatType, Layout, ScoreMode, DEFAULT_OUTPUT_NAME, NUM_KEYPOINTS, POSE_CHAIN};
use crate::decoders::single_pose::MAX_CELLS_F32;
use crate::error::printable;
use crate::error::{Error, HeadCandidate, Result};
use crate::model::proto::Dim;
use crate::model::query;
use crate::tract_bridge::{list_tensors, TensorFacts};

const OFFSET_CHANNELS: usize = 2 * NUM_KEYPOINTS;
const DISPLACEMENT_CHANNELS: usize = 2 * POSE_CHAIN.len();

/// The chosen heads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heads {
    pub heatmaps: String,
    pub offsets: String,
    pub layout: Layout,
    /// Heatmap grid `(height, width)`.
    pub grid: (usize, usize),
    pub batch: Dim,
}

/// What the user said about the heads (`--heatmaps`, `--offsets`, `--displacement-fwd`,
/// `--displacement-bwd`).
#[derive(Clone, Debug, Default)]
pub struct HeadChoice {
    pub heatmaps: Option<String>,
    pub offsets: Option<String>,
    pub displacement_fwd: Option<String>,
    pub displacement_bwd: Option<String>,
}

/// The forward and backward displacement heads (32 channels each) multi-pose decoding reads.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Displacements {
    pub fwd: String,
    pub bwd: String,
}

/// What is fixed of the decoder settings before anything is detected: the rewrite's flags, or
/// verify's flags over REWRITTEN's provenance.
#[derive(Clone, Debug, Default)]
pub struct GivenSettings {
    pub heads: HeadChoice,
    pub stride: Option<u32>,
    pub scores: Option<ScoreMode>,
    pub output: Option<String>,
}

/// The decoder settings for a model whose outputs are `outputs` and whose image input is
/// `image`: what `given` fixes, the rest detected (the heads by shape and name, the stride from
/// the image and the grid, the score mode from what computes the heatmaps); with the heads found.
pub fn settle(
    given: &GivenSettings,
    outputs: &[TensorFacts],
    inputs: &[TensorFacts],
    image: Option<&ImageInput>,
    graph: &GraphProto,
) -> Result<(DecoderSettings, Heads)> {
    let heads = detect(outputs, &given.heads)?;
    let stride = match (given.stride, image) {
        (Some(0), _) => return Err(Error::Usage("--stride must be positive".into())),
        (Some(s), _) => s,
        (None, Some(image)) => derive_stride(image.size, heads.grid)
            .map_err(|unknown| Error::Usage(format!("{unknown}; pass --stride N")))?,
        (None, None) => {
            return Err(Error::Usage(format!(
                "cannot tell the image input among {}; pass --stride N (and --input-shape for symbolic dims)",
                list_tensors(inputs)
            )))
        }
    };
    let settings = DecoderSettings {
        heatmaps: heads.heatmaps.clone(),
        offsets: heads.offsets.clone(),
        output: given.output.clone().unwrap_or_else(|| DEFAULT_OUTPUT_NAME.to_string()),
        layout: heads.layout,
        stride,
        scores: given.scores.unwrap_or_else(|| score_mode(graph, &heads.heatmaps)),
    };
    Ok((settings, heads))
}

/// The type of head `name` among `outputs`: float32 unless inference settled on float16.
pub fn head_type(outputs: &[TensorFacts], name: &str) -> FloatType {
    outputs.iter().find(|o| o.name == name).and_then(|o| o.datum_type).and_then(FloatType::of_datum).unwrap_or_default()
}

/// One way of reading an output as a head.
#[derive(Clone, Debug)]
struct Reading<'a> {
    output: &'a TensorFacts,
    layout: Layout,
    grid: (usize, usize),
    batch: Dim,
}

fn readings(output: &TensorFacts, channels: usize) -> Vec<Reading<'_>> {
    if output.datum_type.is_some_and(|dt| FloatType::of_datum(dt).is_none()) {
        return vec![];
    }
    let Some(dims) = output.shape.as_ref().filter(|d| d.len() == 4) else { return vec![] };
    let fixed = |ix: usize| match dims[ix] {
        Dim::Fixed(v) if v > 0 => Some(v as usize),
        _ => None,
    };
    [Layout::Nchw, Layout::Nhwc]
        .into_iter()
        .filter_map(|layout| {
            let (hy, wx) = layout.spatial_axes();
            (fixed(layout.channel_axis())? == channels).then_some(())?;
            Some(Reading { output, layout, grid: (fixed(hy)?, fixed(wx)?), batch: dims[0].clone() })
        })
        .collect()
}

/// Two heads' batches can be the same: equal when both are fixed, else left to the runtime.
fn batches_agree(a: &Dim, b: &Dim) -> bool {
    match (a, b) {
        (Dim::Fixed(a), Dim::Fixed(b)) => a == b,
        _ => true,
    }
}

fn name_says(name: &str, words: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    words.iter().any(|w| lower.contains(w))
}

/// Picks the heatmaps and offsets among `outputs`.
pub fn detect(outputs: &[TensorFacts], choice: &HeadChoice) -> Result<Heads> {
    for (flag, name) in [("--heatmaps", &choice.heatmaps), ("--offsets", &choice.offsets)] {
        if let Some(name) = name {
            if !outputs.iter().any(|o| &o.name == name) {
                return Err(Error::Usage(format!(
                    "{flag} {name}: no graph output has that name (outputs: {})",
                    list_tensors(outputs)
                )));
            }
        }
    }
    let chosen = |o: &TensorFacts, wanted: &Option<String>| wanted.as_ref().is_none_or(|w| *w == o.name);
    let heatmaps: Vec<Reading> =
        outputs.iter().filter(|o| chosen(o, &choice.heatmaps)).flat_map(|o| readings(o, NUM_KEYPOINTS)).collect();
    let offsets: Vec<Reading> =
        outputs.iter().filter(|o| chosen(o, &choice.offsets)).flat_map(|o| readings(o, OFFSET_CHANNELS)).collect();

    let mut pairs: Vec<(&Reading, &Reading)> = heatmaps
        .iter()
        .flat_map(|h| offsets.iter().map(move |o| (h, o)))
        .filter(|(h, o)| h.output.name != o.output.name && h.layout == o.layout && h.grid == o.grid)
        .filter(|(h, o)| batches_agree(&h.batch, &o.batch))
        .collect();
    if pairs.len() > 1 {
        let named: Vec<_> = pairs
            .iter()
            .copied()
            .filter(|(h, o)| name_says(&h.output.name, &["heatmap", "heat"]) && name_says(&o.output.name, &["offset"]))
            .collect();
        if !named.is_empty() {
            pairs = named;
        }
    }
    if pairs.is_empty() {
        if let Some(symbolic) = outputs.iter().find(|o| has_symbolic_grid(o)) {
            return Err(Error::HeadsNotFound {
                reason: format!(
                    "output {} has shape {} with symbolic dims besides the batch; pin the input with \
                 --input-shape, e.g. --input-shape 1,3,257,257",
                    printable(&symbolic.name),
                    symbolic.shape_string()
                ),
            });
        }
    }
    match pairs.as_slice() {
        [(h, o)] => {
            let (gh, gw) = h.grid;
            if gh.checked_mul(gw).is_none_or(|cells| cells > MAX_CELLS_F32) {
                return Err(Error::Unsupported(format!(
                    "heatmaps {} have a {gh}x{gw} grid, over the decoder's limit of {MAX_CELLS_F32} cells",
                    printable(&h.output.name)
                )));
            }
            Ok(Heads {
                heatmaps: h.output.name.clone(),
                offsets: o.output.name.clone(),
                layout: h.layout,
                grid: h.grid,
                batch: h.batch.clone(),
            })
        }
        [] => {
            let candidates = outputs.iter().filter(|o| chosen(o, &choice.heatmaps) || chosen(o, &choice.offsets));
            let reasons: Vec<String> = candidates.filter_map(near_miss).collect();
            Err(Error::HeadsNotFound {
                reason: format!(
                    "no pose heads found: {}expected float32 or float16 outputs of rank 4 with {NUM_KEYPOINTS} (heatmaps) and \
                 {OFFSET_CHANNELS} (offsets) channels on the same grid, NCHW or NHWC; outputs: {}{}",
                    reasons.iter().map(|r| format!("{r}; ")).collect::<String>(),
                    list_tensors(outputs),
                    if heatmaps.is_empty() || offsets.is_empty() { "" } else { " (their grids or layouts differ)" }
                ),
            })
        }
        many => Err(Error::HeadsAmbiguous {
            outputs: list_tensors(outputs),
            candidates: many
                .iter()
                .map(|(h, o)| HeadCandidate {
                    heatmaps: printable(&h.output.name).into_owned(),
                    offsets: printable(&o.output.name).into_owned(),
                    layout: h.layout,
                })
                .collect(),
        }),
    }
}

/// Picks the forward and backward displacements among `outputs`: 32-channel outputs on the
/// heads' layout, grid and batch, told apart by name (`fwd`/`forward`, `bwd`/`backward`) unless
/// `choice` names them. Each error says what is missing, or which flags settle it.
pub fn detect_displacements(outputs: &[TensorFacts], heads: &Heads, choice: &HeadChoice) -> Result<Displacements> {
    let fits = |o: &TensorFacts| {
        o.name != heads.heatmaps
            && o.name != heads.offsets
            && readings(o, DISPLACEMENT_CHANNELS)
                .iter()
                .any(|r| r.layout == heads.layout && r.grid == heads.grid && batches_agree(&r.batch, &heads.batch))
    };
    let (gh, gw) = heads.grid;
    let wanted = format!(
        "float32 or float16 outputs with {DISPLACEMENT_CHANNELS} channels on the heatmaps' {gh}x{gw} {} grid",
        heads.layout
    );
    for (flag, name) in
        [("--displacement-fwd", &choice.displacement_fwd), ("--displacement-bwd", &choice.displacement_bwd)]
    {
        if let Some(name) = name {
            match outputs.iter().find(|o| &o.name == name) {
                None => {
                    return Err(Error::Usage(format!(
                        "{flag} {}: no graph output has that name (outputs: {})",
                        printable(name),
                        list_tensors(outputs)
                    )))
                }
                Some(o) if !fits(o) => {
                    return Err(Error::Usage(format!(
                        "{flag} {}: output of shape {} is not a displacement head (expected {wanted})",
                        printable(name),
                        o.shape_string()
                    )))
                }
                Some(_) => {}
            }
        }
    }
    if let (Some(fwd), Some(bwd)) = (&choice.displacement_fwd, &choice.displacement_bwd) {
        if fwd == bwd {
            return Err(Error::Usage("--displacement-fwd and --displacement-bwd name the same output".into()));
        }
        return Ok(Displacements { fwd: fwd.clone(), bwd: bwd.clone() });
    }
    let found: Vec<&str> = outputs.iter().filter(|o| fits(o)).map(|o| o.name.as_str()).collect();
    if found.len() < 2 {
        return Err(Error::HeadsNotFound {
            reason: format!(
                "multi-pose decoding needs the forward and backward displacements: {wanted}; {}",
                match found.as_slice() {
                    [] => format!("none among {}", list_tensors(outputs)),
                    [one] => format!("only {} is one", printable(one)),
                    _ => unreachable!(),
                }
            ),
        });
    }
    let forward = |n: &str| name_says(n, &["fwd", "forward"]) && !name_says(n, &["bwd", "backward"]);
    let backward = |n: &str| name_says(n, &["bwd", "backward"]) && !name_says(n, &["fwd", "forward"]);
    let pick = |given: &Option<String>, named: &dyn Fn(&str) -> bool, other: &Option<String>| -> Option<String> {
        if let Some(given) = given {
            return Some(given.clone());
        }
        let left: Vec<&str> = found.iter().copied().filter(|n| Some(*n) != other.as_deref()).collect();
        match left.iter().copied().filter(|n| named(n)).collect::<Vec<_>>().as_slice() {
            [one] => Some(one.to_string()),
            // The one output left once the other is named.
            _ if other.is_some() && left.len() == 1 => Some(left[0].to_string()),
            _ => None,
        }
    };
    let fwd = pick(&choice.displacement_fwd, &forward, &choice.displacement_bwd);
    let bwd = pick(&choice.displacement_bwd, &backward, &choice.displacement_fwd);
    match (fwd, bwd) {
        (Some(fwd), Some(bwd)) if fwd != bwd => Ok(Displacements { fwd, bwd }),
        _ => Err(Error::Usage(format!(
            "cannot tell the forward from the backward displacements among {} by their names; pass \
             --displacement-fwd NAME and --displacement-bwd NAME",
            found.iter().map(|n| printable(n)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Why an output that looks like a head cannot be read as one: a head's channel count on the
/// channel axis of either layout, but another element type, a rank other than 4, or an empty
/// axis. `None` for outputs that are simply something else.
fn near_miss(output: &TensorFacts) -> Option<String> {
    let dims = output.shape.as_ref()?;
    let channels_at = |ix: usize| match dims.get(ix) {
        Some(Dim::Fixed(c)) if *c == NUM_KEYPOINTS as i64 || *c == OFFSET_CHANNELS as i64 => Some(*c),
        _ => None,
    };
    // A vector of 17 or 34 scores is something else; a head flattened to rank 3 is not.
    if dims.len() < 3 {
        return None;
    }
    let channels = channels_at(1).or_else(|| channels_at(dims.len() - 1))?;
    let name = printable(&output.name);
    if dims.len() != 4 {
        return Some(format!(
            "output {name} has rank {} ({}): pose heads must be rank 4 (NCHW or NHWC)",
            dims.len(),
            output.shape_string()
        ));
    }
    if let Some(dt) = output.datum_type.filter(|dt| FloatType::of_datum(*dt).is_none()) {
        // Narrowing float64 to float32 could make distinct scores equal, and the decode inexact.
        let why = if dt == DatumType::F64 {
            " (double is not narrowed to float32: that could tie distinct scores)"
        } else {
            ""
        };
        return Some(format!(
            "output {name} has {channels} channels but type {}: only float32 and float16 heads are supported{why}",
            crate::model::element_type::datum_name(dt)
        ));
    }
    if dims.iter().any(|d| matches!(d, Dim::Fixed(v) if *v <= 0)) {
        return Some(format!("output {name} has shape {}: an empty axis", output.shape_string()));
    }
    None
}

/// A rank-4 output whose channel count could be a head's but whose other dims are not all known.
fn has_symbolic_grid(output: &TensorFacts) -> bool {
    let Some(dims) = output.shape.as_ref().filter(|d| d.len() == 4) else { return false };
    dims[1..].iter().any(|d| !matches!(d, Dim::Fixed(_)))
}


/// The model's image input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInput {
    /// Position among the graph inputs tract sees (inputs that are not initializers).
    pub index: usize,
    pub name: String,
    pub layout: Layout,
    /// Input size `(height, width)` in pixels.
    pub size: (usize, usize),
}

/// The single rank-4 input with 3 (RGB) or 1 channels and known spatial dims.
pub fn image_input(inputs: &[TensorFacts]) -> Option<ImageInput> {
    let candidates: Vec<ImageInput> = inputs
        .iter()
        .enumerate()
        .filter_map(|(index, input)| {
            let dims = input.shape.as_ref().filter(|d| d.len() == 4)?;
            let fixed = |ix: usize| match dims[ix] {
                Dim::Fixed(v) if v > 0 => Some(v as usize),
                _ => None,
            };
            let is_channels = |ix: usize| matches!(fixed(ix), Some(1 | 3));
            let layout = if is_channels(1) && !is_channels(3) {
                Layout::Nchw
            } else if is_channels(3) && !is_channels(1) {
                Layout::Nhwc
            } else if is_channels(1) {
                // [N, 3, 3, 3] or [N, 1, H, 1]: prefer the PyTorch/ONNX default.
                Layout::Nchw
            } else {
                return None;
            };
            let (hy, wx) = layout.spatial_axes();
            Some(ImageInput { index, name: input.name.clone(), layout, size: (fixed(hy)?, fixed(wx)?) })
        })
        .collect();
    match candidates.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// Output stride of a grid over an input: PoseNet's `(in-1)/(out-1)` (257 -> 17 is 16) or
/// `in/out` (TF "SAME" models, 256 -> 16 is 16), on both axes alike. When both rules are exact
/// and disagree (256 -> 16 is also 255/15 = 17), the power of two wins, as every PoseNet stride
/// (8, 16, 32) is one. `Err` carries the candidates when no single stride follows.
pub fn output_stride(input: (usize, usize), grid: (usize, usize)) -> std::result::Result<u32, Vec<u32>> {
    let exact = |num: usize, den: usize| (den > 0 && num > 0 && num.is_multiple_of(den)).then(|| num / den);
    // An axis of one cell says nothing under the PoseNet rule; let the other axis decide.
    let posenet_axis =
        |size: usize, cells: usize| if cells > 1 { exact(size.saturating_sub(1), cells - 1) } else { None };
    let agree = |a: Option<usize>, b: Option<usize>, one_cell: (bool, bool)| match (a, b, one_cell) {
        (Some(a), Some(b), _) if a == b => Some(a),
        (Some(a), None, (false, true)) => Some(a),
        (None, Some(b), (true, false)) => Some(b),
        _ => None,
    };
    let one_cell = (grid.0 == 1, grid.1 == 1);
    let posenet = agree(posenet_axis(input.0, grid.0), posenet_axis(input.1, grid.1), one_cell);
    let same = agree(exact(input.0, grid.0), exact(input.1, grid.1), (false, false));
    let candidates: Vec<u32> = match (posenet, same) {
        (Some(a), Some(b)) if a != b => vec![a as u32, b as u32],
        (Some(a), _) | (None, Some(a)) => vec![a as u32],
        (None, None) => vec![],
    };
    let powers: Vec<u32> = candidates.iter().copied().filter(|s| s.is_power_of_two()).collect();
    match (candidates.as_slice(), powers.as_slice()) {
        ([one], _) | (_, [one]) => Ok(*one),
        _ => Err(candidates),
    }
}

/// Why no single output stride follows from an input size and a heatmap grid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot derive the output stride from input {}x{} and heatmap grid {}x{}{}",
    input.0, input.1, grid.0, grid.1,
    match candidates.as_slice() {
        [] => String::new(),
        c => format!(" (it could be {})", c.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(" or ")),
    }
)]
pub struct StrideUnknown {
    pub input: (usize, usize),
    pub grid: (usize, usize),
    pub candidates: Vec<u32>,
}

/// [`output_stride`], its failure said once for the rewrite, `verify` and `inspect`.
pub fn derive_stride(input: (usize, usize), grid: (usize, usize)) -> std::result::Result<u32, StrideUnknown> {
    output_stride(input, grid).map_err(|candidates| StrideUnknown { input, grid, candidates })
}

/// Whether the heatmaps already end in a Sigmoid, possibly followed by ops that only move values
/// (Transpose to NHWC, Reshape, Identity...), which makes the heatmap maximum the score itself.
pub fn score_mode(graph: &GraphProto, heatmaps: &str) -> ScoreMode {
    let mut tensor = heatmaps.to_string();
    // Bounded walk: a malformed graph may contain an Identity cycle.
    for _ in 0..=graph.node.len() {
        let Some(producer) = graph.node.iter().find(|n| n.output.contains(&tensor)) else {
            break;
        };
        let default_domain = query::is_default_domain(producer);
        match producer.op_type.as_str() {
            "Sigmoid" if default_domain => return ScoreMode::Raw,
            "Identity" | "Transpose" | "Reshape" | "Flatten" | "Squeeze" | "Unsqueeze"
                if default_domain && !producer.input.is_empty() =>
            {
                tensor = producer.input[0].clone()
            }
            _ => break,
        }
    }
    ScoreMode::Sigmoid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(name: &str, dims: &[i64]) -> TensorFacts {
        TensorFacts {
            name: name.into(),
            datum_type: Some(DatumType::F32),
            shape: Some(dims.iter().map(|d| Dim::Fixed(*d)).collect()),
        }
    }

    #[test]
    fn posenet_257_cube_is_settled_by_the_offsets() {
        let outputs = [
            out("a", &[1, 34, 17, 17]),
            out("b", &[1, 17, 17, 17]),
            out("c", &[1, 32, 17, 17]),
            out("d", &[1, 32, 17, 17]),
        ];
        let heads = detect(&outputs, &HeadChoice::default()).unwrap();
        assert_eq!((heads.heatmaps.as_str(), heads.offsets.as_str(), heads.layout), ("b", "a", Layout::Nchw));
        assert_eq!(heads.grid, (17, 17));
    }

    #[test]
    fn nhwc_non_square_heads() {
        let outputs = [out("off", &[2, 17, 23, 34]), out("heat", &[2, 17, 23, 17])];
        let heads = detect(&outputs, &HeadChoice::default()).unwrap();
        assert_eq!(heads.layout, Layout::Nhwc);
        assert_eq!(heads.grid, (17, 23));
    }

    #[test]
    fn ambiguity_is_settled_by_names_or_reported_with_flags() {
        let outputs = [out("x1", &[1, 17, 9, 9]), out("x2", &[1, 17, 9, 9]), out("x3", &[1, 34, 9, 9])];
        let err = detect(&outputs, &HeadChoice::default()).unwrap_err().to_string();
        assert!(err.contains("--heatmaps x1 --offsets x3") && err.contains("--heatmaps x2 --offsets x3"), "{err}");
        let chosen = HeadChoice { heatmaps: Some("x2".into()), ..HeadChoice::default() };
        assert_eq!(detect(&outputs, &chosen).unwrap().heatmaps, "x2");
        let named = [out("x1", &[1, 17, 9, 9]), out("heatmap", &[1, 17, 9, 9]), out("offsets", &[1, 34, 9, 9])];
        assert_eq!(detect(&named, &HeadChoice::default()).unwrap().heatmaps, "heatmap");
    }

    #[test]
    fn missing_heads_and_unknown_flags_are_errors() {
        let outputs = [out("logits", &[1, 1000])];
        assert!(detect(&outputs, &HeadChoice::default()).unwrap_err().to_string().contains("no pose heads"));
        let choice = HeadChoice { heatmaps: Some("nope".into()), ..HeadChoice::default() };
        assert!(detect(&outputs, &choice).unwrap_err().to_string().contains("--heatmaps nope"));
    }

    fn typed(name: &str, dt: DatumType, dims: &[i64]) -> TensorFacts {
        TensorFacts { datum_type: Some(dt), ..out(name, dims) }
    }

    #[test]
    fn float16_heads_are_found_and_their_types_told() {
        let outputs = [typed("heatmaps", DatumType::F16, &[1, 17, 9, 9]), out("offsets", &[1, 34, 9, 9])];
        let heads = detect(&outputs, &HeadChoice::default()).unwrap();
        assert_eq!((heads.heatmaps.as_str(), heads.offsets.as_str()), ("heatmaps", "offsets"));
        assert_eq!(head_type(&outputs, "heatmaps"), FloatType::Float16);
        assert_eq!(head_type(&outputs, "offsets"), FloatType::Float32);
    }

    #[test]
    fn heads_of_another_type_rank_or_size_are_named() {
        let err = |outputs: &[TensorFacts]| detect(outputs, &HeadChoice::default()).unwrap_err().to_string();
        let f64 = |name, dims| typed(name, DatumType::F64, dims);
        let e = err(&[f64("heatmaps", &[1, 17, 9, 9]), f64("offsets", &[1, 34, 9, 9])]);
        let want = "no pose heads found: output heatmaps has 17 channels but type double: only float32 and float16 \
                    heads are supported (double is not narrowed to float32: that could tie distinct scores)";
        assert!(e.starts_with(want), "{e}");
        assert!(e.contains("output offsets has 34 channels but type double"), "{e}");
        let e = err(&[typed("h", DatumType::I32, &[1, 9, 9, 17]), out("o", &[1, 9, 9, 34])]);
        assert!(e.contains("output h has 17 channels but type int32"), "{e}");
        let e = err(&[out("heatmaps", &[1, 17, 81]), out("offsets", &[1, 34, 9, 9])]);
        assert!(e.contains("output heatmaps has rank 3 ([1, 17, 81]): pose heads must be rank 4"), "{e}");
        let e = err(&[out("heatmaps", &[1, 17, 9, 9, 1]), out("offsets", &[1, 34, 9, 9])]);
        assert!(e.contains("heatmaps has rank 5"), "{e}");
        let e = err(&[out("heatmaps", &[1, 17, 0, 9]), out("offsets", &[1, 34, 0, 9])]);
        assert!(e.contains("output heatmaps has shape [1, 17, 0, 9]: an empty axis"), "{e}");
        // Something else entirely is listed, not diagnosed.
        let e = err(&[out("logits", &[1, 1000])]);
        assert!(e.starts_with("no pose heads found: expected"), "{e}");
    }

    #[test]
    fn grids_beyond_the_decoder_are_refused_without_overflow() {
        let huge = 1i64 << 40;
        let outputs = [out("heatmaps", &[1, 17, huge, huge]), out("offsets", &[1, 34, huge, huge])];
        let e = detect(&outputs, &HeadChoice::default()).unwrap_err().to_string();
        assert!(e.contains("over the decoder's limit"), "{e}");
        let outputs = [out("heatmaps", &[1, 17, 4097, 4096]), out("offsets", &[1, 34, 4097, 4096])];
        assert!(detect(&outputs, &HeadChoice::default()).is_err());
        let outputs = [out("heatmaps", &[1, 17, 4096, 4096]), out("offsets", &[1, 34, 4096, 4096])];
        assert!(detect(&outputs, &HeadChoice::default()).is_ok());
    }

    #[test]
    fn displacements_by_name_by_one_flag_or_not_at_all() {
        let heads = |outputs: &[TensorFacts]| detect(outputs, &HeadChoice::default()).unwrap();
        let base = [out("heatmaps", &[1, 17, 9, 9]), out("offsets", &[1, 34, 9, 9])];
        let with = |extra: &[TensorFacts]| [base.to_vec(), extra.to_vec()].concat();
        let outputs =
            with(&[out("MobilenetV1/displacement_bwd_2", &[1, 32, 9, 9]), out("disp_forward", &[1, 32, 9, 9])]);
        let d = detect_displacements(&outputs, &heads(&outputs), &HeadChoice::default()).unwrap();
        assert_eq!((d.fwd.as_str(), d.bwd.as_str()), ("disp_forward", "MobilenetV1/displacement_bwd_2"));
        // Another grid or layout is not a displacement head.
        let outputs = with(&[out("fwd", &[1, 32, 9, 9]), out("bwd", &[1, 32, 5, 5])]);
        let e = detect_displacements(&outputs, &heads(&outputs), &HeadChoice::default()).unwrap_err().to_string();
        assert!(e.contains("only fwd is one"), "{e}");
        // Names that do not tell; one flag settles it.
        let outputs = with(&[out("a", &[1, 32, 9, 9]), out("b", &[1, 32, 9, 9])]);
        let e = detect_displacements(&outputs, &heads(&outputs), &HeadChoice::default()).unwrap_err().to_string();
        assert!(e.contains("cannot tell the forward from the backward displacements among a, b"), "{e}");
        let choice = HeadChoice { displacement_bwd: Some("a".into()), ..HeadChoice::default() };
        let d = detect_displacements(&outputs, &heads(&outputs), &choice).unwrap();
        assert_eq!((d.fwd.as_str(), d.bwd.as_str()), ("b", "a"));
        let choice = HeadChoice { displacement_fwd: Some("a".into()), displacement_bwd: Some("a".into()), ..choice };
        assert!(detect_displacements(&outputs, &heads(&outputs), &choice).is_err());
    }

    #[test]
    fn strides() {
        assert_eq!(output_stride((257, 257), (17, 17)), Ok(16));
        assert_eq!(output_stride((513, 257), (33, 17)), Ok(16));
        assert_eq!(output_stride((256, 256), (16, 16)), Ok(16), "255/15 = 17 too, but 16 is PoseNet's");
        assert_eq!(output_stride((225, 225), (29, 29)), Ok(8));
        assert_eq!(output_stride((257, 33), (17, 1)), Ok(16), "a one-cell axis defers to the other");
        assert_eq!(output_stride((257, 257), (17, 9)), Err(vec![]));
        assert_eq!(output_stride((100, 100), (7, 7)), Err(vec![]));
        assert_eq!(output_stride((1, 1), (3, 3)), Err(vec![]), "never 0");
        assert_eq!(output_stride((0, 0), (3, 3)), Err(vec![]));
        // 61 -> 5: 60/4 = 15 and none of 61/5; 91 -> 7: 90/6 = 15 and 91/7 = 13, no power of two.
        assert_eq!(output_stride((61, 61), (5, 5)), Ok(15));
        assert_eq!(output_stride((91, 91), (7, 7)), Err(vec![15, 13]));
    }
}
