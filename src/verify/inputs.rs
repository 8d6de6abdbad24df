//! Step 2: the inputs fed to both models. Photos are decoded (EXIF orientation applied, as a
//! browser shows them to tfjs), converted to RGB, resized to the model's input size with a
//! bilinear filter ([`RESIZE_FILTER`], tfjs' `resizeBilinear` default), normalized by a
//! [`Preprocess`] preset (or fed as pixels to a model that normalizes them itself), laid out
//! NCHW or NHWC and repeated over the batch. The adversarial images are made directly in the
//! model's input space, or as pixels for a model that takes pixels.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};

use crate::contract::Layout;
use crate::rng::Rng;

/// How photos are resized, as the report states it.
pub const RESIZE_FILTER: &str = "bilinear (image::imageops::FilterType::Triangle)";
const FILTER: FilterType = FilterType::Triangle;

/// The bundled sample photos, embedded so `--verify` works from any directory.
const BUNDLED: [(&str, &[u8]); 1] = [("astronaut.png", include_bytes!("../../samples/astronaut.png"))];

#[derive(Debug)]
enum Source {
    File(PathBuf),
    Bundled(&'static [u8]),
    /// A path that yields no photo (a folder without images, an unlistable folder).
    Problem(PhotoError),
}

/// Why a photo cannot be checked.
#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    #[error("cannot list the folder: {0}")]
    Unlistable(std::sync::Arc<std::io::Error>),
    #[error("no .jpg, .jpeg or .png files in this folder")]
    EmptyFolder,
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    #[error("not a JPEG or PNG image")]
    NotAnImage,
    #[error("cannot decode: {0}")]
    Decode(image::ImageError),
}

/// One photo to check, not yet decoded (photos are decoded one at a time).
#[derive(Debug)]
pub(crate) struct Photo {
    /// As shown in reports.
    pub name: String,
    /// File stem, for `--draw`.
    pub stem: String,
    source: Source,
}

fn is_photo(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
}

fn stem(path: &Path) -> String {
    path.file_stem().map_or_else(|| "photo".to_string(), |s| s.to_string_lossy().into_owned())
}

/// The photos named by `paths`: files as given, folders scanned (not recursively) for `.jpg`,
/// `.jpeg` and `.png` in any case, sorted. No paths: the bundled samples.
pub(crate) fn list_photos(paths: &[PathBuf]) -> Vec<Photo> {
    if paths.is_empty() {
        return BUNDLED
            .iter()
            .map(|(name, bytes)| Photo {
                name: format!("{name} (bundled)"),
                stem: stem(Path::new(name)),
                source: Source::Bundled(bytes),
            })
            .collect();
    }
    let mut photos = vec![];
    for path in paths {
        let file =
            |p: &Path| Photo { name: p.display().to_string(), stem: stem(p), source: Source::File(p.to_path_buf()) };
        if !path.is_dir() {
            photos.push(file(path));
            continue;
        }
        let problem = |reason: PhotoError| Photo {
            name: path.display().to_string(),
            stem: String::new(),
            source: Source::Problem(reason),
        };
        match fs::read_dir(path) {
            Err(e) => photos.push(problem(PhotoError::Unlistable(e.into()))),
            Ok(entries) => {
                let mut found: Vec<PathBuf> =
                    entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file() && is_photo(p)).collect();
                found.sort();
                if found.is_empty() {
                    photos.push(problem(PhotoError::EmptyFolder));
                }
                photos.extend(found.iter().map(|p| file(p)));
            }
        }
    }
    photos
}

impl Photo {
    /// The decoded photo, upright, in RGB; the error is one line without the name.
    pub fn load(&self) -> Result<RgbImage, PhotoError> {
        let bytes = match &self.source {
            Source::File(path) => fs::read(path).map_err(PhotoError::Read)?,
            Source::Bundled(bytes) => bytes.to_vec(),
            Source::Problem(PhotoError::Unlistable(e)) => return Err(PhotoError::Unlistable(e.clone())),
            Source::Problem(_) => return Err(PhotoError::EmptyFolder),
        };
        decode(&bytes)
    }
}

/// Decodes JPEG or PNG bytes (by content, not by file name) and applies the EXIF orientation.
fn decode(bytes: &[u8]) -> Result<RgbImage, PhotoError> {
    let reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(PhotoError::Read)?;
    if reader.format().is_none() {
        return Err(PhotoError::NotAnImage);
    }
    let mut decoder = reader.into_decoder().map_err(PhotoError::Decode)?;
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder).map_err(PhotoError::Decode)?;
    if let Some(o) = orientation {
        image.apply_orientation(o);
    }
    Ok(image.to_rgb8())
}

/// A rank-4 tensor of `shape` in `layout`, `f(b, c, y, x)` at each element. Plain loops over a
/// flat buffer: `ndarray`'s generic indexing would be instantiated here, and is slow unoptimized.
fn fill(shape: &[usize], layout: Layout, mut f: impl FnMut(usize, usize, usize, usize) -> f32) -> ArrayD<f32> {
    let (n, (c, h, w)) = (shape[0], dims(shape, layout));
    let mut data = Vec::with_capacity(shape.iter().product());
    for b in 0..n {
        match layout {
            Layout::Nchw => {
                for ch in 0..c {
                    for y in 0..h {
                        for x in 0..w {
                            data.push(f(b, ch, y, x));
                        }
                    }
                }
            }
            Layout::Nhwc => {
                for y in 0..h {
                    for x in 0..w {
                        for ch in 0..c {
                            data.push(f(b, ch, y, x));
                        }
                    }
                }
            }
        }
    }
    ArrayD::from_shape_vec(IxDyn(shape), data).expect("one value per element")
}

/// `(channels, height, width)` of a rank-4 shape in `layout`.
fn dims(shape: &[usize], layout: Layout) -> (usize, usize, usize) {
    let (y, x) = layout.spatial_axes();
    (shape[layout.channel_axis()], shape[y], shape[x])
}

/// The photo as the model's input tensor of `shape`, every batch item the same photo, each
/// pixel value `v` of channel `c` (of `channels`) fed as `value(c, channels, v)`.
pub(crate) fn photo_tensor(
    photo: &RgbImage,
    shape: &[usize],
    layout: Layout,
    value: impl Fn(usize, usize, u8) -> f32,
) -> ArrayD<f32> {
    let (channels, h, w) = dims(shape, layout);
    // Through DynamicImage: its resize is compiled (and optimized) in the image crate, where the
    // generic `imageops::resize` would be instantiated here, unoptimized in dev builds (7x slower).
    let resized = DynamicImage::ImageRgb8(photo.clone()).resize_exact(w as u32, h as u32, FILTER);
    let pixels: Vec<u8> = if channels == 1 { resized.to_luma8().into_raw() } else { resized.into_rgb8().into_raw() };
    let step = channels.min(3);
    fill(shape, layout, |_, c, y, x| value(c, channels, pixels[(y * w + x) * step + c.min(step - 1)]))
}

/// Built-in images as 0..255 pixels, for a model that takes pixels (`--pixels`): black, mid
/// grey, a gradient, a black and white checkerboard of `stride`-pixel squares and seeded noise;
/// each fed through `value(c, channels, v)`, once per model.
pub(crate) fn adversarial_pixels(
    shape: &[usize],
    layout: Layout,
    stride: u32,
    value: impl Fn(usize, usize, u8) -> f32,
) -> Vec<(&'static str, ArrayD<f32>)> {
    let (channels, h, w) = dims(shape, layout);
    let (h, w) = (h.max(2), w.max(2));
    let square = stride.max(1) as usize;
    let mut noise_rngs: Vec<Rng> = (0..shape[0]).map(|b| Rng::new(0x5EED_0000 + b as u64)).collect();
    let gradient = |c: usize, y: usize, x: usize| ((y * 255 / (h - 1) + x * 255 / (w - 1)) / 2 + 20 * c).min(255) as u8;
    vec![
        ("zeros", fill(shape, layout, |_, c, _, _| value(c, channels, 0))),
        ("constant", fill(shape, layout, |_, c, _, _| value(c, channels, 128))),
        ("gradient", fill(shape, layout, |_, c, y, x| value(c, channels, gradient(c, y, x)))),
        (
            "checkerboard",
            fill(shape, layout, |_, c, y, x| {
                value(c, channels, if (y / square + x / square).is_multiple_of(2) { 255 } else { 0 })
            }),
        ),
        ("noise", fill(shape, layout, |b, c, _, _| value(c, channels, (noise_rngs[b].next_u64() >> 56) as u8))),
    ]
}

/// Built-in inputs in the model's input space (roughly [-1, 1], what a normalized photo
/// spans): all zeros (constant heads: exact ties everywhere in a 1x1-conv model), a constant,
/// a gradient, a checkerboard of `stride`-pixel squares (equal maxima in different rows of
/// such a model's heatmaps) and seeded noise (a different seed per batch item).
pub(crate) fn adversarial(shape: &[usize], layout: Layout, stride: u32) -> Vec<(&'static str, ArrayD<f32>)> {
    let (_, h, w) = dims(shape, layout);
    let (h, w) = (h.max(2), w.max(2));
    let square = stride.max(1) as usize;
    let mut noise_rngs: Vec<Rng> = (0..shape[0]).map(|b| Rng::new(0x5EED_0000 + b as u64)).collect();
    vec![
        ("zeros", ArrayD::zeros(IxDyn(shape))),
        ("constant", ArrayD::from_elem(IxDyn(shape), 0.5)),
        (
            "gradient",
            fill(shape, layout, |_, c, y, x| {
                y as f32 / (h - 1) as f32 + x as f32 / (w - 1) as f32 - 1.0 + 0.1 * c as f32
            }),
        ),
        (
            "checkerboard",
            fill(shape, layout, |_, _, y, x| if (y / square + x / square).is_multiple_of(2) { 1.0 } else { -1.0 }),
        ),
        ("noise", fill(shape, layout, |b, _, _, _| noise_rngs[b].uniform(-1.0, 1.0))),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Preprocess;

    #[test]
    fn presets() {
        assert_eq!(Preprocess::Mobilenet.apply(0, 3, 0), -1.0);
        assert_eq!(Preprocess::Mobilenet.apply(0, 3, 255), 1.0);
        assert_eq!(Preprocess::Resnet.apply(2, 3, 103), 103.0 - 103.06);
        assert_eq!(Preprocess::Unit.apply(1, 3, 255), 1.0);
        assert_eq!(Preprocess::Raw.apply(1, 3, 7), 7.0);
        // The report's names are the command line's.
        #[cfg(feature = "cli")]
        {
            use clap::ValueEnum;
            for p in Preprocess::value_variants() {
                assert_eq!(p.to_possible_value().unwrap().get_name(), p.as_str());
            }
        }
    }

    #[test]
    fn photos_are_laid_out_per_layout() {
        let mut img = RgbImage::new(4, 2);
        img.put_pixel(3, 1, image::Rgb([255, 0, 127]));
        let raw = |c, ch, v| Preprocess::Raw.apply(c, ch, v);
        let nchw = photo_tensor(&img, &[2, 3, 2, 4], Layout::Nchw, raw);
        let nhwc = photo_tensor(&img, &[1, 2, 4, 3], Layout::Nhwc, raw);
        assert_eq!((nchw[[1, 0, 1, 3]], nchw[[1, 2, 1, 3]]), (255.0, 127.0));
        assert_eq!((nhwc[[0, 1, 3, 0]], nhwc[[0, 1, 3, 2]]), (255.0, 127.0));
    }

    #[test]
    fn bundled_sample_decodes_and_bad_bytes_do_not() {
        let photos = list_photos(&[]);
        assert_eq!(photos[0].name, "astronaut.png (bundled)");
        let img = photos[0].load().unwrap();
        assert_eq!(img.dimensions(), (512, 512));
        assert!(matches!(decode(b"not an image at all"), Err(PhotoError::NotAnImage)));
        assert!(decode(&[0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n', 0, 0]).is_err());
    }
}
