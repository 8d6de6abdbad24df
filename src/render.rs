//! The look of a drawn pose ([`DRAW_STYLE`]), shared by `--draw` and the browser page.

/// How a pose is drawn over a photo, by `--draw` and by the browser page (which reads it from
/// the wasm module): colours as RGB, opacities, sizes as a fraction of the photo's smaller side
/// with a floor in pixels.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct DrawStyle {
    pub left: [u8; 3],
    pub right: [u8; 3],
    /// The nose.
    pub middle: [u8; 3],
    pub edge: [u8; 3],
    pub outline: [u8; 3],
    pub opaque: f32,
    /// Below `threshold`: a wrong guess stays visible, faint.
    pub faint: f32,
    /// The outline's opacity relative to its keypoint's.
    pub outline_opacity: f32,
    /// Score under which a keypoint is drawn faint (tfjs posenet demos' `minPartConfidence` is
    /// 0.5 by default too).
    pub threshold: f32,
    pub line_per_side: f32,
    pub line_min: f32,
    pub dot_per_side: f32,
    pub dot_min: f32,
    /// How far the outline reaches past the dot, in pixels.
    pub outline_width: f32,
    /// Multi-pose: pose i's colour is `poses[i % len]` (edges, keypoints, score label).
    pub poses: [[u8; 3]; 6],
    /// The score label's font pixel: a fraction of the smaller side, with a floor.
    pub label_per_side: f32,
    pub label_min: f32,
}

pub const DRAW_STYLE: DrawStyle = DrawStyle {
    left: [255, 140, 0],
    right: [0, 190, 255],
    middle: [255, 60, 200],
    edge: [120, 255, 80],
    outline: [0, 0, 0],
    opaque: 0.95,
    faint: 0.3,
    outline_opacity: 0.8,
    threshold: 0.5,
    line_per_side: 1.0 / 300.0,
    line_min: 1.5,
    dot_per_side: 1.0 / 90.0,
    dot_min: 3.0,
    outline_width: 1.5,
    poses: [[255, 140, 0], [0, 190, 255], [255, 60, 200], [120, 255, 80], [255, 230, 0], [170, 110, 255]],
    label_per_side: 1.0 / 150.0,
    label_min: 2.0,
};

impl DrawStyle {
    /// Keypoint k's colour: the nose in the middle colour, odd (left) and even (right) keypoints.
    pub fn keypoint(&self, k: usize) -> [u8; 3] {
        match k {
            0 => self.middle,
            k if k % 2 == 1 => self.left,
            _ => self.right,
        }
    }
}
