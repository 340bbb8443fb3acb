//! Media inspection for uploaded ad creatives.
//!
//! Owns recognising uploads by content (magic bytes, never file names or declared types), reading
//! the headers of JPEG, PNG, WebP and MP4/H.264, and enforcing the creative rules: per-format byte
//! limits, structural completeness, dimensions, portrait 9:16 aspect ratio and video duration.
//! Uploads are attacker-controlled, so they are only walked header by header with bounds-checked
//! reads and never decoded; no input can make [`inspect`] panic.
//!
//! Also provides a tiny PNG encoder ([`png`]) and header-only fixture builders ([`samples`]) for
//! demo creatives and tests.
//!
//! Why hand-written: the field's crates (`image`, `mp4`, `mp4parse`) decode or parse whole
//! files into memory, which is work, memory and attack surface an upload check does not need;
//! these walkers read only the few header boxes and chunks the rules name, each read bounds-
//! checked, and stop at the first violation. `media::tests` rejects every prefix of a valid file
//! and mutated ones, and `tests/fuzz.rs` feeds arbitrary and mutated bytes, so every walker is
//! held to "a clear error, never a panic".

use std::fmt;

mod jpeg;
mod mp4;
pub mod png;
pub mod samples;
mod webp;

pub const MAX_IMAGE_BYTES: usize = 5 * 1024 * 1024;
pub const MAX_VIDEO_BYTES: usize = 30 * 1024 * 1024;
pub const MAX_VIDEO_MS: u64 = 30_000;
pub const MIN_WIDTH: u32 = 540;
pub const MIN_HEIGHT: u32 = 960;

/// Upper bound per side: headers claiming more are rejected before anything could size buffers
/// from them (decompression-bomb style files).
const MAX_DIMENSION: u32 = 16_384;

/// Allowed relative deviation from exactly 9:16.
const ASPECT_TOLERANCE: f64 = 0.02;

const NOT_SUPPORTED: &str = "not a supported media type (JPEG, PNG, WebP, MP4/H.264)";
const TRUNCATED: &str = "file is truncated or corrupt";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFormat {
    Image,
    Video,
}

impl MediaFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaFormat::Image => "image",
            MediaFormat::Video => "video",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    pub format: MediaFormat,
    /// "image/jpeg" | "image/png" | "image/webp" | "video/mp4"
    pub mime: &'static str,
    /// Display width: EXIF orientation (JPEG) and 90-degree track rotation (MP4) are applied.
    pub width: u32,
    pub height: u32,
    /// Some only for video.
    pub duration_ms: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaError {
    /// Not JPEG/PNG/WebP/MP4-with-H.264 by content, or truncated/corrupt headers. (HTTP 415)
    Unsupported(String),
    /// Over the per-format byte limit. (HTTP 413)
    TooLarge { limit: usize },
    /// Smaller than 540x960 (or zero / absurd > 16384 px). (422 invalid_dimensions)
    InvalidDimensions(String),
    /// Not portrait 9:16 within ±2%. (422 invalid_aspect_ratio)
    InvalidAspectRatio(String),
    /// Video longer than 30 s or zero/unknown duration. (422 invalid_duration)
    InvalidDuration(String),
}

impl fmt::Display for MediaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MediaError::Unsupported(msg) => write!(f, "unsupported media: {msg}"),
            MediaError::TooLarge { limit } => {
                const MIB: usize = 1024 * 1024;
                if limit % MIB == 0 {
                    write!(f, "file is larger than the {} MiB limit", limit / MIB)
                } else {
                    write!(f, "file is larger than the {limit} byte limit")
                }
            }
            MediaError::InvalidDimensions(msg) => write!(f, "invalid dimensions: {msg}"),
            MediaError::InvalidAspectRatio(msg) => write!(f, "invalid aspect ratio: {msg}"),
            MediaError::InvalidDuration(msg) => write!(f, "invalid duration: {msg}"),
        }
    }
}

impl std::error::Error for MediaError {}

/// Recognise by magic bytes (never by file name or declared type), parse headers, then enforce the
/// limits in this order: format recognised -> byte limit for that format -> structural completeness
/// (truncation) -> dimensions -> aspect ratio -> duration.
pub fn inspect(bytes: &[u8]) -> Result<MediaInfo, MediaError> {
    let container =
        Container::sniff(bytes).ok_or_else(|| MediaError::Unsupported(NOT_SUPPORTED.into()))?;
    let (format, mime) = container.describe();
    let limit = match format {
        MediaFormat::Image => MAX_IMAGE_BYTES,
        MediaFormat::Video => MAX_VIDEO_BYTES,
    };
    // Checked before parsing so oversized uploads cost nothing beyond the sniff.
    if bytes.len() > limit {
        return Err(MediaError::TooLarge { limit });
    }
    let ((width, height), duration_ms) = match container {
        Container::Jpeg => (jpeg::parse(bytes)?, None),
        Container::Png => (png::parse(bytes)?, None),
        Container::WebP => (webp::parse(bytes)?, None),
        Container::Mp4 => {
            let (dims, duration_ms) = mp4::parse(bytes)?;
            (dims, Some(duration_ms))
        }
    };
    check_dimensions(width, height)?;
    if !is_portrait_9_16(width, height) {
        return Err(MediaError::InvalidAspectRatio(format!(
            "{width}x{height} is not portrait 9:16 (within 2%)"
        )));
    }
    if let Some(ms) = duration_ms {
        check_duration(ms)?;
    }
    Ok(MediaInfo {
        format,
        mime,
        width,
        height,
        duration_ms,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Jpeg,
    Png,
    WebP,
    Mp4,
}

impl Container {
    fn sniff(bytes: &[u8]) -> Option<Container> {
        if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(Container::Jpeg)
        } else if bytes.starts_with(&png::SIGNATURE) {
            Some(Container::Png)
        } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP".as_slice()) {
            Some(Container::WebP)
        } else if bytes.get(4..8) == Some(b"ftyp".as_slice())
            // QuickTime (.mov) shares the box structure but is not MP4.
            && bytes.get(8..12) != Some(b"qt  ".as_slice())
        {
            Some(Container::Mp4)
        } else {
            None
        }
    }

    fn describe(self) -> (MediaFormat, &'static str) {
        match self {
            Container::Jpeg => (MediaFormat::Image, "image/jpeg"),
            Container::Png => (MediaFormat::Image, "image/png"),
            Container::WebP => (MediaFormat::Image, "image/webp"),
            Container::Mp4 => (MediaFormat::Video, "video/mp4"),
        }
    }
}

fn check_dimensions(width: u32, height: u32) -> Result<(), MediaError> {
    let problem = if width == 0 || height == 0 {
        "has a zero side".to_string()
    } else if width > MAX_DIMENSION || height > MAX_DIMENSION {
        format!("exceeds the maximum of {MAX_DIMENSION} px per side")
    } else if width < MIN_WIDTH || height < MIN_HEIGHT {
        format!("is smaller than the minimum {MIN_WIDTH}x{MIN_HEIGHT}")
    } else {
        return Ok(());
    };
    Err(MediaError::InvalidDimensions(format!(
        "{width}x{height} {problem}"
    )))
}

/// Callers guarantee a non-zero height (dimensions are checked first).
fn is_portrait_9_16(width: u32, height: u32) -> bool {
    let ratio = f64::from(width) / f64::from(height);
    (ratio / (9.0 / 16.0) - 1.0).abs() <= ASPECT_TOLERANCE
}

fn check_duration(ms: u64) -> Result<(), MediaError> {
    if ms == 0 {
        Err(MediaError::InvalidDuration(
            "video duration is zero or unknown".into(),
        ))
    } else if ms > MAX_VIDEO_MS {
        Err(MediaError::InvalidDuration(format!(
            "video is {ms} ms long; the maximum is {MAX_VIDEO_MS} ms"
        )))
    } else {
        Ok(())
    }
}

fn truncated() -> MediaError {
    MediaError::Unsupported(TRUNCATED.into())
}

// Bounds-checked readers shared by the format parsers: None means "not enough bytes".

fn bytes_at<const N: usize>(data: &[u8], at: usize) -> Option<[u8; N]> {
    data.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn slice_at(data: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    data.get(at..at.checked_add(len)?)
}

fn be_u16(data: &[u8], at: usize) -> Option<u16> {
    bytes_at(data, at).map(u16::from_be_bytes)
}

fn le_u16(data: &[u8], at: usize) -> Option<u16> {
    bytes_at(data, at).map(u16::from_le_bytes)
}

fn be_u32(data: &[u8], at: usize) -> Option<u32> {
    bytes_at(data, at).map(u32::from_be_bytes)
}

fn le_u32(data: &[u8], at: usize) -> Option<u32> {
    bytes_at(data, at).map(u32::from_le_bytes)
}

fn be_u64(data: &[u8], at: usize) -> Option<u64> {
    bytes_at(data, at).map(u64::from_be_bytes)
}

fn le_u24(data: &[u8], at: usize) -> Option<u32> {
    let [a, b, c] = bytes_at(data, at)?;
    Some(u32::from_le_bytes([a, b, c, 0]))
}

#[cfg(test)]
mod tests;
