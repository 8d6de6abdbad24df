//! Finding the pose heads among a model's outputs, the image input, and the output stride.
//!
//! Heads are recognised by shape: rank 4, float, 17 channels (heatmaps) or 34 (offsets) on the
//! channel axis of either layout, with the two sharing layout, batch and grid. Where shapes allow
//! more than one reading (a 257 input gives a `17x17x17` heatmap that fits both layouts), the other
//! head and then the names decide; if they cannot, the caller is told which flags settle it.

use onnx_protobuf::GraphProto;
use tract_onnx::prelude::DatumType;

use crate::contract::{Layout, ScoreMode, NUM_KEYPOINTS};
use crate::error::{Error, Result};
use crate::proto::Dim;
use crate::tract_bridge::TensorFacts;

const OFFSET_CHANNELS: usize = 2 * NUM_KEYPOINTS;

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

/// What the user said about the heads (`--heatmaps`, `--offsets`).
#[derive(Clone, Debug, Default)]
pub struct HeadChoice {
    pub heatmaps: Option<String>,
    pub offsets: Option<String>,
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
    if output.datum_type.is_some_and(|dt| dt != DatumType::F32) {
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

fn name_says(name: &str, words: &[&str]) -> bool {
    let lower = name.to_ascii_lowercase();
    words.iter().any(|w| lower.contains(w))
}

/// Picks the heatmaps and offsets among `outputs`.
pub fn detect(outputs: &[TensorFacts], choice: &HeadChoice) -> Result<Heads> {
    for (flag, name) in [("--heatmaps", &choice.heatmaps), ("--offsets", &choice.offsets)] {
        if let Some(name) = name {
            if !outputs.iter().any(|o| &o.name == name) {
                return Err(Error::Heads(format!(
                    "{flag} {name}: no graph output has that name (outputs: {})",
                    list_outputs(outputs)
                )));
            }
        }
    }
    let chosen = |o: &TensorFacts, wanted: &Option<String>| wanted.as_ref().is_none_or(|w| *w == o.name);
    let heatmaps: Vec<Reading> = outputs
        .iter()
        .filter(|o| chosen(o, &choice.heatmaps))
        .flat_map(|o| readings(o, NUM_KEYPOINTS))
        .collect();
    let offsets: Vec<Reading> = outputs
        .iter()
        .filter(|o| chosen(o, &choice.offsets))
        .flat_map(|o| readings(o, OFFSET_CHANNELS))
        .collect();

    let mut pairs: Vec<(&Reading, &Reading)> = heatmaps
        .iter()
        .flat_map(|h| offsets.iter().map(move |o| (h, o)))
        .filter(|(h, o)| h.output.name != o.output.name && h.layout == o.layout && h.grid == o.grid)
        .filter(|(h, o)| match (&h.batch, &o.batch) {
            (Dim::Fixed(a), Dim::Fixed(b)) => a == b,
            _ => true,
        })
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
            return Err(Error::Heads(format!(
                "output {} has shape {} with symbolic dims besides the batch; pin the input with \
                 --input-shape, e.g. --input-shape 1,3,257,257",
                symbolic.name,
                symbolic.shape_string()
            )));
        }
    }
    match pairs.as_slice() {
        [(h, o)] => Ok(Heads {
            heatmaps: h.output.name.clone(),
            offsets: o.output.name.clone(),
            layout: h.layout,
            grid: h.grid,
            batch: h.batch.clone(),
        }),
        [] => Err(Error::Heads(format!(
            "no pose heads found: expected float outputs of rank 4 with {NUM_KEYPOINTS} (heatmaps) and \
             {OFFSET_CHANNELS} (offsets) channels on the same grid, NCHW or NHWC; outputs: {}{}",
            list_outputs(outputs),
            if heatmaps.is_empty() || offsets.is_empty() { "" } else { " (their grids or layouts differ)" }
        ))),
        many => {
            let options: Vec<String> = many
                .iter()
                .map(|(h, o)| format!("--heatmaps {} --offsets {} ({})", h.output.name, o.output.name, h.layout))
                .collect();
            Err(Error::Heads(format!(
                "the pose heads are ambiguous; outputs: {}; choose with one of: {}",
                list_outputs(outputs),
                options.join(" | ")
            )))
        }
    }
}

/// A rank-4 output whose channel count could be a head's but whose other dims are not all known.
fn has_symbolic_grid(output: &TensorFacts) -> bool {
    let Some(dims) = output.shape.as_ref().filter(|d| d.len() == 4) else { return false };
    dims[1..].iter().any(|d| !matches!(d, Dim::Fixed(_)))
}

fn list_outputs(outputs: &[TensorFacts]) -> String {
    outputs.iter().map(|o| format!("{} {}", o.name, o.shape_string())).collect::<Vec<_>>().join(", ")
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
    let exact = |num: usize, den: usize| (den > 0 && num > 0 && num % den == 0).then(|| num / den);
    // An axis of one cell says nothing under the PoseNet rule; let the other axis decide.
    let posenet_axis = |size: usize, cells: usize| if cells > 1 { exact(size.saturating_sub(1), cells - 1) } else { None };
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

/// Whether the heatmaps already end in a Sigmoid, possibly followed by ops that only move values
/// (Transpose to NHWC, Reshape, Identity...), which makes the heatmap maximum the score itself.
pub fn score_mode(graph: &GraphProto, heatmaps: &str) -> ScoreMode {
    let mut tensor = heatmaps.to_string();
    // Bounded walk: a malformed graph may contain an Identity cycle.
    for _ in 0..=graph.node.len() {
        let Some(producer) = graph.node.iter().find(|n| n.output.iter().any(|o| *o == tensor)) else {
            break;
        };
        let default_domain = producer.domain.is_empty() || producer.domain == "ai.onnx";
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
        let chosen = HeadChoice { heatmaps: Some("x2".into()), offsets: None };
        assert_eq!(detect(&outputs, &chosen).unwrap().heatmaps, "x2");
        let named = [out("x1", &[1, 17, 9, 9]), out("heatmap", &[1, 17, 9, 9]), out("offsets", &[1, 34, 9, 9])];
        assert_eq!(detect(&named, &HeadChoice::default()).unwrap().heatmaps, "heatmap");
    }

    #[test]
    fn missing_heads_and_unknown_flags_are_errors() {
        let outputs = [out("logits", &[1, 1000])];
        assert!(detect(&outputs, &HeadChoice::default()).unwrap_err().to_string().contains("no pose heads"));
        let choice = HeadChoice { heatmaps: Some("nope".into()), offsets: None };
        assert!(detect(&outputs, &choice).unwrap_err().to_string().contains("--heatmaps nope"));
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
