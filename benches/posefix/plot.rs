//! Line charts rendered to PNG with `image` and an 8x8 bitmap font: no plotting stack, no system
//! fonts, the same pixels on every machine. Linear axes from zero, so a straight line through
//! the origin reads as "grows linearly".

use std::path::Path;

use image::{Rgb, RgbImage};

pub struct Series {
    pub name: String,
    pub color: [u8; 3],
    pub points: Vec<(f64, f64)>,
    /// Dashed and without markers: a reference line rather than a measurement.
    pub reference: bool,
}

pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

pub const BLUE: [u8; 3] = [31, 119, 180];
pub const ORANGE: [u8; 3] = [255, 127, 14];
pub const GREEN: [u8; 3] = [44, 160, 44];
pub const RED: [u8; 3] = [214, 39, 40];
pub const GREY: [u8; 3] = [127, 127, 127];

const WIDTH: u32 = 960;
const HEIGHT: u32 = 600;
const LEFT: i64 = 90;
const RIGHT: i64 = 250;
const TOP: i64 = 60;
const BOTTOM: i64 = 70;

/// A tick step of 1, 2 or 5 times a power of ten giving about 6 ticks up to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = max / 6.0;
    let power = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * power).find(|s| *s >= raw).unwrap_or(10.0 * power)
}

fn tick_label(v: f64, step: f64) -> String {
    if step >= 1.0 {
        format!("{v:.0}")
    } else {
        let decimals = (-step.log10()).ceil() as usize;
        format!("{v:.decimals$}")
    }
}

struct Canvas(RgbImage);

impl Canvas {
    fn dot(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as u32) < self.0.width() && (y as u32) < self.0.height() {
            self.0.put_pixel(x as u32, y as u32, Rgb(color));
        }
    }

    fn rect(&mut self, x0: i64, y0: i64, w: i64, h: i64, color: [u8; 3]) {
        for y in y0..y0 + h {
            for x in x0..x0 + w {
                self.dot(x, y, color);
            }
        }
    }

    /// A `thickness`-pixel line; `dash` > 0 draws `dash` pixels on, `dash` off.
    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), color: [u8; 3], thickness: i64, dash: i64) {
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
        for i in 0..=steps {
            if dash > 0 && (i / dash) % 2 == 1 {
                continue;
            }
            let x = x0 + (x1 - x0) * i / steps;
            let y = y0 + (y1 - y0) * i / steps;
            self.rect(x - thickness / 2, y - thickness / 2, thickness, thickness, color);
        }
    }

    /// ASCII text with its top-left corner at `(x, y)`, each font pixel `scale` pixels wide.
    fn text(&mut self, x: i64, y: i64, text: &str, scale: i64, color: [u8; 3]) {
        for (i, c) in text.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY[(c as usize).min(127)];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        self.rect(x + (i as i64 * 8 + col) * scale, y + row as i64 * scale, scale, scale, color);
                    }
                }
            }
        }
    }
}

fn text_width(text: &str, scale: i64) -> i64 {
    text.chars().count() as i64 * 8 * scale
}

/// Renders `chart` to a PNG at `path`.
pub fn render(chart: &Chart, path: &Path) -> image::ImageResult<()> {
    let mut c = Canvas(RgbImage::from_pixel(WIDTH, HEIGHT, Rgb([255, 255, 255])));
    let (w, h) = (WIDTH as i64, HEIGHT as i64);
    let (plot_w, plot_h) = (w - LEFT - RIGHT, h - TOP - BOTTOM);
    let points = || chart.series.iter().flat_map(|s| s.points.iter());
    let x_max = points().map(|p| p.0).fold(0.0, f64::max) * 1.05;
    let y_max = points().map(|p| p.1).fold(0.0, f64::max) * 1.1;
    let (x_max, y_max) = (if x_max > 0.0 { x_max } else { 1.0 }, if y_max > 0.0 { y_max } else { 1.0 });
    let px = |(x, y): (f64, f64)| -> (i64, i64) {
        (LEFT + (x / x_max * plot_w as f64).round() as i64, TOP + plot_h - (y / y_max * plot_h as f64).round() as i64)
    };
    let black = [0, 0, 0];
    let light = [225, 225, 225];

    let (x_step, y_step) = (tick_step(x_max), tick_step(y_max));
    let mut v = 0.0;
    while v <= x_max {
        let (x, _) = px((v, 0.0));
        c.line((x, TOP), (x, TOP + plot_h), light, 1, 0);
        let label = tick_label(v, x_step);
        c.text(x - text_width(&label, 1) / 2, TOP + plot_h + 8, &label, 1, black);
        v += x_step;
    }
    let mut v = 0.0;
    while v <= y_max {
        let (_, y) = px((0.0, v));
        c.line((LEFT, y), (LEFT + plot_w, y), light, 1, 0);
        let label = tick_label(v, y_step);
        c.text(LEFT - 8 - text_width(&label, 1), y - 4, &label, 1, black);
        v += y_step;
    }
    c.line((LEFT, TOP), (LEFT, TOP + plot_h), black, 2, 0);
    c.line((LEFT, TOP + plot_h), (LEFT + plot_w, TOP + plot_h), black, 2, 0);
    c.text(LEFT, 16, &chart.title, 2, black);
    c.text(LEFT - 70, TOP - 20, &chart.y_label, 1, black);
    c.text(LEFT + plot_w / 2 - text_width(&chart.x_label, 1) / 2, TOP + plot_h + 30, &chart.x_label, 1, black);

    for (i, s) in chart.series.iter().enumerate() {
        let mut pts = s.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        for pair in pts.windows(2) {
            c.line(px(pair[0]), px(pair[1]), s.color, 2, if s.reference { 6 } else { 0 });
        }
        if !s.reference {
            for p in &pts {
                let (x, y) = px(*p);
                c.rect(x - 3, y - 3, 7, 7, s.color);
            }
        }
        let ly = TOP + 10 + i as i64 * 22;
        let lx = LEFT + plot_w + 20;
        c.line((lx, ly + 4), (lx + 24, ly + 4), s.color, 3, if s.reference { 5 } else { 0 });
        c.text(lx + 32, ly, &s.name, 1, black);
    }
    c.0.save(path)
}
