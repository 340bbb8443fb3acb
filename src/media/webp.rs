//! WebP header reading: the RIFF chunk list and the dimensions in its first chunk.

use super::{bytes_at, le_u16, le_u24, le_u32, slice_at, truncated, MediaError};

/// Returns (width, height) from the first chunk (VP8X canvas, VP8L or VP8 key frame).
pub(super) fn parse(data: &[u8]) -> Result<(u32, u32), MediaError> {
    dimensions(data).ok_or_else(truncated)
}

fn dimensions(data: &[u8]) -> Option<(u32, u32)> {
    // The RIFF size counts everything after the 8-byte RIFF header, so it pins the file length.
    let riff_size = usize::try_from(le_u32(data, 4)?).ok()?;
    if riff_size.checked_add(8)? != data.len() {
        return None;
    }
    let mut pos = 12; // past "RIFF", size, "WEBP"
    let mut first = None;
    while pos < data.len() {
        let kind: [u8; 4] = bytes_at(data, pos)?;
        let size = usize::try_from(le_u32(data, pos.checked_add(4)?)?).ok()?;
        let body_at = pos.checked_add(8)?;
        let body = slice_at(data, body_at, size)?;
        first.get_or_insert((kind, body));
        // Chunks are padded to even length; a missing pad after the last chunk is tolerated.
        pos = body_at.checked_add(size)?.checked_add(size & 1)?;
    }
    let (kind, body) = first?;
    match &kind {
        b"VP8X" => vp8x(body),
        b"VP8L" => vp8l(body),
        b"VP8 " => vp8(body),
        _ => None,
    }
}

/// Extended format: flags, 3 reserved bytes, then canvas width-1 and height-1 as 24-bit LE.
fn vp8x(body: &[u8]) -> Option<(u32, u32)> {
    Some((le_u24(body, 4)? + 1, le_u24(body, 7)? + 1))
}

/// Lossless: signature 0x2f, then 14-bit width-1 and height-1 packed LSB first.
fn vp8l(body: &[u8]) -> Option<(u32, u32)> {
    if *body.first()? != 0x2F {
        return None;
    }
    let bits = le_u32(body, 1)?;
    Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
}

/// Lossy: 3-byte frame tag (bit 0 clear on key frames), start code 9D 01 2A, then 14-bit width
/// and height (the top two bits of each are a scaling hint).
fn vp8(body: &[u8]) -> Option<(u32, u32)> {
    if *body.first()? & 1 != 0 || bytes_at(body, 3)? != [0x9D, 0x01, 0x2A] {
        return None;
    }
    Some((
        u32::from(le_u16(body, 6)? & 0x3FFF),
        u32::from(le_u16(body, 8)? & 0x3FFF),
    ))
}
