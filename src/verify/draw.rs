//! `--draw`: the rewritten model's pose over each photo, at the photo's own size, so a person can
//! see what the model found. Keypoints are scaled from model-input pixels by photo size over
//! input size per axis (as tfjs posenet scales poses back). Keypoints scoring below
//! [`SCORE_THRESHOLD`], and skeleton edges touching one, are drawn faint rather than hidden:
//! a wrong guess should stay visible.
//!
//! Drawn by hand (a line and a disc per edge and keypoint) rather than with `imageproc`: its
//! anti-aliasing would be the one gain, and it brings nalgebra, rand and rayon into every build
//! of the tool for a diagnostic picture.

use std::collections::HashSet;

use image::{Rgb, RgbImage};

use crate::contract::{NUM_KEYPOINTS, SKELETON};

/// Score under which a keypoint is drawn faint (tfjs posenet demos' `minPartConfidence` is 0.5
/// by default too).
pub const SCORE_THRESHOLD: f32 = 0.5;

const OPAQUE: f32 = 0.95;
const FAINT: f32 = 0.3;
const LEFT: Rgb<u8> = Rgb([255, 140, 0]);
const RIGHT: Rgb<u8> = Rgb([0, 190, 255]);
const MIDDLE: Rgb<u8> = Rgb([255, 60, 200]);
const EDGE: Rgb<u8> = Rgb([120, 255, 80]);
const OUTLINE: Rgb<u8> = Rgb([0, 0, 0]);

fn colour(k: usize) -> Rgb<u8> {
    match k {
        0 => MIDDLE,
        k if k % 2 == 1 => LEFT,
        _ => RIGHT,
    }
}

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
/// `(height, width)`) drawn over it.
pub(crate) fn draw_pose(photo: &RgbImage, pose: &[[f32; 3]; NUM_KEYPOINTS], input_size: (usize, usize)) -> RgbImage {
    let mut img = photo.clone();
    let (w, h) = img.dimensions();
    let (sx, sy) = (w as f32 / input_size.1 as f32, h as f32 / input_size.0 as f32);
    let points: Vec<Option<((f32, f32), bool)>> = pose
        .iter()
        .map(|[x, y, score]| (x.is_finite() && y.is_finite()).then(|| ((x * sx, y * sy), *score >= SCORE_THRESHOLD)))
        .collect();
    let size = w.min(h) as f32;
    let line = (size / 300.0).max(1.5);
    let dot = (size / 90.0).max(3.0);
    for (a, b) in SKELETON {
        if let (Some((pa, sure_a)), Some((pb, sure_b))) = (points[a], points[b]) {
            let alpha = if sure_a && sure_b { OPAQUE } else { FAINT };
            segment(&mut img, pa, pb, line, EDGE, alpha);
        }
    }
    for (k, point) in points.iter().enumerate() {
        if let Some((p, sure)) = *point {
            let alpha = if sure { OPAQUE } else { FAINT };
            segment(&mut img, p, p, dot + 1.5, OUTLINE, alpha * 0.8);
            segment(&mut img, p, p, dot, colour(k), alpha);
        }
    }
    img
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
        let mut taken = HashSet::new();
        assert_eq!(file_name("a", &mut taken), "a.png");
        assert_eq!(file_name("a", &mut taken), "a-2.png");
    }
}
