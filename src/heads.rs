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

/// Output stride of a grid over an input: PoseNet's `(in-1)/(out-1)` when exact on both axes,
/// else `in/out` when exact, else `None`.
pub fn output_stride(input: (usize, usize), grid: (usize, usize)) -> Option<u32> {
    let exact = |num: usize, den: usize| (den > 0 && num % den == 0).then(|| num / den);
    let same = |a: Option<usize>, b: Option<usize>| match (a, b) {
        (Some(a), Some(b)) if a == b && a > 0 => Some(a as u32),
        _ => None,
    };
    let valid = |size: usize, cells: usize| {
        if cells > 1 {
            exact(size - 1, cells - 1)
        } else {
            None
        }
    };
    // A 1-cell axis says nothing with the PoseNet rule; let the other axis decide.
    let posenet = match (grid.0 > 1, grid.1 > 1) {
        (true, true) => same(valid(input.0, grid.0), valid(input.1, grid.1)),
        (true, false) => valid(input.0, grid.0).map(|s| s as u32),
        (false, true) => valid(input.1, grid.1).map(|s| s as u32),
        (false, false) => None,
    };
    posenet.or_else(|| same(exact(input.0, grid.0), exact(input.1, grid.1)))
}

/// Whether the heatmaps already end in a Sigmoid (through Identity nodes), which makes the
/// heatmap maximum the score itself.
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
            "Identity" if default_domain && !producer.input.is_empty() => tensor = producer.input[0].clone(),
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
        assert_eq!(output_stride((257, 257), (17, 17)), Some(16));
        assert_eq!(output_stride((513, 257), (33, 17)), Some(16));
        assert_eq!(output_stride((256, 256), (16, 16)), Some(16));
        assert_eq!(output_stride((225, 225), (29, 29)), Some(8));
        assert_eq!(output_stride((257, 257), (17, 9)), None);
        assert_eq!(output_stride((100, 100), (7, 7)), None);
    }
}
