//! The normalization the rewrite prepends to the image input with `--pixels`: the model then
//! takes pixels as an engine hands them over (0..1 from a texture, 0..255 from an image buffer)
//! and computes `--preprocess` itself, in its first nodes.
//!
//! Byte pixels give exactly the values `verify --preprocess` computes ([`Preprocess::apply`]),
//! bit for bit, on every runtime that rounds `+`, `-` and `*` as IEEE does:
//! - ResNet: an Add of the per-channel mean, the same operation.
//! - MobileNet, `x / 127.5 - 1`: not a Div, which runtimes are free to compute as a Mul by the
//!   reciprocal (tract does: 111 of the 256 byte values then come out one ulp off), and which
//!   GPU shaders compute within 2.5 ulp. Instead `(x * HI + x * LO) - 1`, where `HI` is 1/127.5
//!   cut to 12 significant bits (so `x * HI` is exact for any byte) and `LO` the rest: the sum
//!   rounds once from within 2^-36 of the true quotient, which is never that close to a rounding
//!   boundary for an integer `x` (127.5 is 255/2 and 255 is odd), so it is the correctly rounded
//!   `x / 127.5`; the test below checks all 256 values.
//!
//! Unit pixels are first multiplied by 255: for `x = b / 255` rounded to f32 (how a runtime turns
//! an 8-bit texel into a float), `x * 255` is `b` again for all 256 values of `b` (tested), so unit
//! input gives the byte path's values too. Any other `x` (a filtered texture) gets
//! `(x*255*HI + x*255*LO) - 1` or `x*255 + mean`, within 2 ulp of the real formula.

use onnx_protobuf::GraphProto;

use crate::contract::{Layout, Pixels, Preprocess, MOBILENET_SCALE};
use crate::decoders::graph::GraphBuilder;
use crate::model::walk;

/// Appends to `b` the nodes turning `input` (pixels) into the normalized image; returns the
/// normalized tensor's name. `channels` is the input's channel count, on `layout`'s axis.
pub fn build(
    b: &mut GraphBuilder,
    input: &str,
    pixels: Pixels,
    preprocess: Preprocess,
    layout: Layout,
    channels: usize,
) -> String {
    let mut x = input.to_string();
    if pixels == Pixels::Unit {
        let scale = b.scalar_f32("byte_range", 255.0, 1);
        x = b.op("Mul", "pixels_as_bytes", &[&x, &scale], vec![]);
    }
    match preprocess {
        Preprocess::Resnet => {
            let dims = match layout {
                Layout::Nchw => [1, channels as i64, 1, 1],
                Layout::Nhwc => [1, 1, 1, channels as i64],
            };
            let mean = b.const_f32("resnet_mean", &dims, &preprocess.resnet_mean(channels));
            b.op("Add", "normalized_image", &[&x, &mean], vec![])
        }
        // Mobilenet; the rewrite refuses the other presets.
        _ => {
            let (hi, lo) = mobilenet_reciprocal();
            let hi = b.scalar_f32("mobilenet_reciprocal_hi", hi, 1);
            let lo = b.scalar_f32("mobilenet_reciprocal_lo", lo, 1);
            let one = b.scalar_f32("one", 1.0, 1);
            let big = b.op("Mul", "pixels_scaled_hi", &[&x, &hi], vec![]);
            let small = b.op("Mul", "pixels_scaled_lo", &[&x, &lo], vec![]);
            let scaled = b.op("Add", "pixels_scaled", &[&big, &small], vec![]);
            b.op("Sub", "normalized_image", &[&scaled, &one], vec![])
        }
    }
}

/// `1 / 127.5` as `HI + LO`: `HI` its first 12 significant bits, `LO` the rest rounded to f32.
pub fn mobilenet_reciprocal() -> (f32, f32) {
    let exact = 1.0 / MOBILENET_SCALE as f64;
    let unit = 2f64.powi(exact.log2().floor() as i32 - 11);
    let hi = (exact / unit).floor() * unit;
    (hi as f32, (exact - hi) as f32)
}

/// Makes every node of `graph` (nested graphs included) that reads `from` read `to` instead.
pub fn rewire(graph: &mut GraphProto, from: &str, to: &str) {
    walk::for_each_node_mut(&mut graph.node, &mut |node| {
        for input in node.input.iter_mut().filter(|i| *i == from) {
            *input = to.to_string();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the graph computes for MobileNet, op by op in f32.
    fn graph_mobilenet(x: f32) -> f32 {
        let (hi, lo) = mobilenet_reciprocal();
        (x * hi + x * lo) - 1.0
    }

    #[test]
    fn byte_and_unit_pixels_normalize_exactly() {
        let (hi, _) = mobilenet_reciprocal();
        let reciprocal = 1.0 / MOBILENET_SCALE;
        let mut plain_mul_differs = 0;
        for v in 0..=255u8 {
            let x = v as f32;
            assert_eq!(x as f64 * hi as f64, (x * hi) as f64, "x * HI is exact for {v}");
            let want = Preprocess::Mobilenet.apply(0, 3, v);
            assert_eq!(graph_mobilenet(x).to_bits(), want.to_bits(), "byte {v}");
            let unit = Pixels::Unit.value(v);
            assert_eq!(unit * 255.0, x, "unit {v} comes back to its byte");
            assert_eq!(graph_mobilenet(unit * 255.0).to_bits(), want.to_bits(), "unit {v}");
            plain_mul_differs += usize::from(x * reciprocal - 1.0 != want);
        }
        // Why not a Mul by the reciprocal (what runtimes may make of a Div).
        assert!(plain_mul_differs > 50, "{plain_mul_differs}");
    }
}
