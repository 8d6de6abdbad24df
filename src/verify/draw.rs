//! `--draw`: the rewritten model's pose over each photo, at the photo's own size, so a person can
//! see what the model found. Keypoints are scaled from model-input pixels by photo size over
//! input size per axis (as tfjs posenet scales poses back). Keypoints scoring below the style's
//! threshold, and skeleton edges touching one, are drawn faint rather than hidden: a wrong guess
//! should stay visible. With `--poses`, every pose found is drawn in its own colour with its
//! score. The look is [`DRAW_STYLE`], which the browser page reads too.
//!
//! Drawn by hand (a line and a disc per edge and keypoint, a 3x5 digit font for scores) rather
//! than with `imageproc`: its anti-aliasing would be the one gain, and it brings nalgebra, rand
//! and rayon into every build of the tool for a diagnostic picture.

use std::collections::HashSet;

use image::{Rgb, RgbImage};

use crate::contract::{NUM_KEYPOINTS, SKELETON};
use crate::render::DRAW_STYLE;

/// Score under which a keypoint is drawn faint.
#[cfg(feature = "testing")]
pub const SCORE_THRESHOLD: f32 = DRAW_STYLE.threshold;

fn blend(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>, alpha: f32) {
    if x < 0 || y < 0 || x >= img.width() as i64 || y >= img.height() as i64 {
        return;
    }
    let p = img.get_pixel_mut(x as u32, y as u32);
    for i in 0..3 {
        p[i] = (p[i] as f32 * (1.0 - alpha) + c[i] as f32 * alpha).round() as u8;
    }
}

/// Every pixel whose centre is within `radius` of the segment `a`-`b`, blended once.
fn segment(img: &mut RgbImage, a: (f32, f32), b: (f32, f32), radius: f32, c: Rgb<u8>, alpha: f32) {
    let (min_x, max_x) = (a.0.min(b.0) - radius, a.0.max(b.0) + radius);
    let (min_y, max_y) = (a.1.min(b.1) - radius, a.1.max(b.1) + radius);
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    for y in min_y.floor() as i64..=max_y.ceil() as i64 {
        for x in min_x.floor() as i64..=max_x.ceil() as i64 {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let t = if len2 > 0.0 { (((px - a.0) * dx + (py - a.1) * dy) / len2).clamp(0.0, 1.0) } else { 0.0 };
            let (cx, cy) = (a.0 + t * dx, a.1 + t * dy);
            if (px - cx).powi(2) + (py - cy).powi(2) <= radius * radius {
                blend(img, x, y, c, alpha);
            }
        }
    }
}

/// The photo with `pose` (`[x, y, score]` per keypoint, in pixels of an input of `input_size`
/// `(height, width)`) drawn over it, keypoints coloured by side.
pub(crate) fn draw_pose(photo: &RgbImage, pose: &[[f32; 3]; NUM_KEYPOINTS], input_size: (usize, usize)) -> RgbImage {
    let mut img = photo.clone();
    let canvas = Canvas::of(&img, input_size);
    canvas.pose(&mut img, pose, |k| DRAW_STYLE.keypoint(k), DRAW_STYLE.edge);
    img
}

/// A pose as `--poses` outputs it: 17 keypoints `[x, y, score]` and the pose score (-1 for an
/// empty slot).
pub(crate) type DrawnPose = ([[f32; 3]; NUM_KEYPOINTS], f32);

/// The photo with every pose found (score >= 0) drawn over it, pose i in the style's i-th pose
/// colour, its score written above it. The last pose is drawn first, so that where poses
/// overlap (a weak near-copy of a person is common) the better one is on top; the labels go over
/// all of them, placed best first, each moved down past those placed before it.
pub(crate) fn draw_poses(photo: &RgbImage, poses: &[DrawnPose], input_size: (usize, usize)) -> RgbImage {
    let mut img = photo.clone();
    let canvas = Canvas::of(&img, input_size);
    let found: Vec<&DrawnPose> = poses.iter().filter(|(_, score)| *score >= 0.0).collect();
    let mut placed: Vec<(f32, f32, f32)> = vec![];
    let labels: Vec<Option<(String, (f32, f32))>> = found
        .iter()
        .map(|(pose, score)| {
            let text = format!("{score:.2}");
            let at = canvas.label_place(&img, pose, &text, &placed)?;
            placed.push((at.0, at.1, canvas.text_width(&text)));
            Some((text, at))
        })
        .collect();
    let colour = |i: usize| DRAW_STYLE.poses[i % DRAW_STYLE.poses.len()];
    for (i, (pose, _)) in found.into_iter().enumerate().rev() {
        canvas.pose(&mut img, pose, |_| colour(i), colour(i));
    }
    // The labels over every pose.
    for (i, label) in labels.into_iter().enumerate() {
        if let Some((text, at)) = label {
            canvas.label(&mut img, at, &text, colour(i));
        }
    }
    img
}

/// Model-input pixels to photo pixels, and the sizes of the marks on this photo.
struct Canvas {
    scale: (f32, f32),
    line: f32,
    dot: f32,
    label: f32,
}

impl Canvas {
    fn of(img: &RgbImage, input_size: (usize, usize)) -> Canvas {
        let (w, h) = img.dimensions();
        let size = w.min(h) as f32;
        let s = &DRAW_STYLE;
        Canvas {
            scale: (w as f32 / input_size.1 as f32, h as f32 / input_size.0 as f32),
            line: (size * s.line_per_side).max(s.line_min),
            dot: (size * s.dot_per_side).max(s.dot_min),
            label: (size * s.label_per_side).max(s.label_min).round(),
        }
    }

    /// Each drawable keypoint's photo position, and whether it scores at the threshold or above.
    fn points(&self, pose: &[[f32; 3]; NUM_KEYPOINTS]) -> Vec<Option<((f32, f32), bool)>> {
        let (sx, sy) = self.scale;
        let at = |&[x, y, score]: &[f32; 3]| {
            (x.is_finite() && y.is_finite()).then_some(((x * sx, y * sy), score >= DRAW_STYLE.threshold))
        };
        pose.iter().map(at).collect()
    }

    fn pose(
        &self,
        img: &mut RgbImage,
        pose: &[[f32; 3]; NUM_KEYPOINTS],
        keypoint: impl Fn(usize) -> [u8; 3],
        edge: [u8; 3],
    ) {
        let s = &DRAW_STYLE;
        let points = self.points(pose);
        for (a, b) in SKELETON {
            if let (Some((pa, sure_a)), Some((pb, sure_b))) = (points[a], points[b]) {
                let alpha = if sure_a && sure_b { s.opaque } else { s.faint };
                segment(img, pa, pb, self.line, Rgb(edge), alpha);
            }
        }
        for (k, point) in points.iter().enumerate() {
            if let Some((p, sure)) = *point {
                let alpha = if sure { s.opaque } else { s.faint };
                segment(img, p, p, self.dot + s.outline_width, Rgb(s.outline), alpha * s.outline_opacity);
                segment(img, p, p, self.dot, Rgb(keypoint(k)), alpha);
            }
        }
    }

    fn text_width(&self, text: &str) -> f32 {
        (4 * text.chars().count()) as f32 * self.label
    }

    /// Where a label `text` goes: above the pose's topmost drawable keypoint, from its leftmost,
    /// inside the photo, and moved down past any label of `placed` (left, top, width) it would
    /// cover. None for a pose with no drawable keypoint.
    fn label_place(
        &self,
        img: &RgbImage,
        pose: &[[f32; 3]; NUM_KEYPOINTS],
        text: &str,
        placed: &[(f32, f32, f32)],
    ) -> Option<(f32, f32)> {
        let points: Vec<(f32, f32)> = self.points(pose).into_iter().flatten().map(|(p, _)| p).collect();
        let left = points.iter().map(|p| p.0).reduce(f32::min)?;
        let top = points.iter().map(|p| p.1).fold(f32::INFINITY, f32::min);
        let (unit, width) = (self.label, self.text_width(text));
        let (w, h) = (img.width() as f32, img.height() as f32);
        let x = left.min(w - width).max(unit);
        let mut y = (top - self.dot - 7.0 * unit).max(unit);
        // Half a pixel of slack: `below + line - below` may round under `line`.
        let line = 7.0 * unit;
        while let Some(&(_, below, _)) =
            placed.iter().find(|&&(px, py, pw)| x < px + pw && px < x + width && (y - py).abs() < line - 0.5)
        {
            y = below + line;
        }
        Some((x, y.min((h - 6.0 * unit).max(unit))))
    }

    /// `text` (digits, `.`, `-`) from `at`, each font pixel a square of `label` photo pixels over
    /// a black outline.
    fn label(&self, img: &mut RgbImage, at: (f32, f32), text: &str, colour: [u8; 3]) {
        let unit = self.label;
        for (grow, c) in [(unit / 2.0, DRAW_STYLE.outline), (0.0, colour)] {
            for (i, ch) in text.chars().enumerate() {
                for (row, bits) in glyph(ch).iter().enumerate() {
                    for col in (0..3).filter(|col| bits >> (2 - col) & 1 == 1) {
                        let x = at.0 + (i * 4 + col) as f32 * unit;
                        let y = at.1 + row as f32 * unit;
                        fill(img, (x - grow, y - grow), unit + 2.0 * grow, Rgb(c));
                    }
                }
            }
        }
    }
}

/// A 3x5 glyph, a row of three bits per line, for the characters a score label needs.
fn glyph(c: char) -> [u8; 5] {
    match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        _ => [0; 5],
    }
}

/// The pixels whose centres lie in the square at `corner` of side `side`, painted `c`.
fn fill(img: &mut RgbImage, corner: (f32, f32), side: f32, c: Rgb<u8>) {
    for y in corner.1.floor() as i64..=(corner.1 + side).ceil() as i64 {
        for x in corner.0.floor() as i64..=(corner.0 + side).ceil() as i64 {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            if px >= corner.0 && px < corner.0 + side && py >= corner.1 && py < corner.1 + side {
                blend(img, x, y, c, 1.0);
            }
        }
    }
}

/// `stem.png`, or `stem-2.png` ... when a photo of the same stem was drawn already.
pub(crate) fn file_name(stem: &str, taken: &mut HashSet<String>) -> String {
    let mut name = format!("{stem}.png");
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{stem}-{n}.png");
        n += 1;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_at_scaled_positions_and_names_uniquely() {
        let photo = RgbImage::new(200, 100);
        let mut pose = [[f32::NAN, f32::NAN, 0.0]; NUM_KEYPOINTS];
        pose[0] = [50.0, 50.0, 0.9];
        // Input 100x100: x scales by 2, y by 1.
        let img = draw_pose(&photo, &pose, (100, 100));
        assert_eq!(*img.get_pixel(100, 50), Rgb([242, 57, 190]));
        assert_eq!(*img.get_pixel(50, 50), Rgb([0, 0, 0]));
        // With --poses: each pose found in its own colour, its score above it; empty slots not.
        let photo = RgbImage::new(300, 300);
        let at = |x: f32, y: f32| {
            let mut pose = [[f32::NAN, f32::NAN, 0.0]; NUM_KEYPOINTS];
            pose[0] = [x, y, 0.9];
            pose
        };
        let poses = [(at(50.0, 150.0), 0.75), (at(150.0, 150.0), 0.5), (at(250.0, 150.0), -1.0)];
        let img = draw_poses(&photo, &poses, (300, 300));
        let blended = |c: [u8; 3]| Rgb(c.map(|v| (v as f32 * DRAW_STYLE.opaque).round() as u8));
        assert_eq!(*img.get_pixel(50, 150), blended(DRAW_STYLE.poses[0]));
        assert_eq!(*img.get_pixel(150, 150), blended(DRAW_STYLE.poses[1]));
        assert_eq!(*img.get_pixel(250, 150), Rgb([0, 0, 0]), "an empty slot is not drawn");
        // The label "0.75": its first glyph's top-left pixel, above the keypoint's dot.
        let c = Canvas::of(&img, (300, 300));
        let (x, y) = (50.0 + 0.5 * c.label, 150.0 - c.dot - 7.0 * c.label + 0.5 * c.label);
        assert_eq!(*img.get_pixel(x as u32, y as u32), Rgb(DRAW_STYLE.poses[0]));
        let mut taken = HashSet::new();
        assert_eq!(file_name("a", &mut taken), "a.png");
        assert_eq!(file_name("a", &mut taken), "a-2.png");
    }
}
