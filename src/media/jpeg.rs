//! JPEG header reading: marker segments up to the frame header, plus the EXIF orientation.

use super::{be_u16, be_u32, le_u16, le_u32, truncated, MediaError};

const EXIF_ORIENTATION_TAG: u16 = 0x0112;

/// Returns display (width, height). Only the segments before the frame header are walked; the
/// entropy-coded data after it is never touched, so completeness is judged by the trailing EOI.
pub(super) fn parse(data: &[u8]) -> Result<(u32, u32), MediaError> {
    dimensions(data).ok_or_else(truncated)
}

fn dimensions(data: &[u8]) -> Option<(u32, u32)> {
    let mut pos = 2; // past SOI
    let mut swap_axes = false;
    let (width, height) = loop {
        let (marker, payload, next) = segment(data, pos)?;
        match marker {
            // SOFn; C4 (DHT), C8 (reserved) and CC (DAC) share the range but are not frame headers.
            0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC) => {
                break (be_u16(payload, 3)?, be_u16(payload, 1)?);
            }
            // Stuffing, SOI, EOI or SOS before any frame header cannot be a valid image.
            0x00 | 0xD8 | 0xD9 | 0xDA => return None,
            0xE1 => {
                swap_axes |= payload
                    .strip_prefix(b"Exif\0\0")
                    .is_some_and(|tiff| matches!(exif_orientation(tiff), Some(5..=8)));
            }
            _ => {}
        }
        pos = next;
    };
    if !data.ends_with(&[0xFF, 0xD9]) {
        return None;
    }
    let (width, height) = (u32::from(width), u32::from(height));
    // Phone cameras store portrait photos landscape with an orientation of 5-8 (90-degree turns);
    // viewers show them rotated, so the display size is what the aspect rule must see.
    Some(if swap_axes {
        (height, width)
    } else {
        (width, height)
    })
}

/// Reads the marker segment at `pos`: (marker code, payload, position after the segment).
fn segment(data: &[u8], mut pos: usize) -> Option<(u8, &[u8], usize)> {
    if *data.get(pos)? != 0xFF {
        return None;
    }
    // Any number of 0xFF fill bytes may precede the marker code.
    while *data.get(pos)? == 0xFF {
        pos = pos.checked_add(1)?;
    }
    let marker = *data.get(pos)?;
    pos = pos.checked_add(1)?;
    // TEM, RSTn, SOI and EOI stand alone without a length field.
    if matches!(marker, 0x01 | 0xD0..=0xD9) {
        return Some((marker, &[], pos));
    }
    // The length counts its own two bytes; a length below 2 yields an inverted range, i.e. None.
    let end = pos.checked_add(usize::from(be_u16(data, pos)?))?;
    let payload = data.get(pos.checked_add(2)?..end)?;
    Some((marker, payload, end))
}

/// Orientation from an EXIF TIFF block (IFD0 only). Malformed EXIF yields None and is ignored
/// rather than rejected, since the pixels themselves are unaffected.
fn exif_orientation(tiff: &[u8]) -> Option<u16> {
    let big_endian = match tiff.get(..2)? {
        b"MM" => true,
        b"II" => false,
        _ => return None,
    };
    let u16_at = |at| {
        if big_endian {
            be_u16(tiff, at)
        } else {
            le_u16(tiff, at)
        }
    };
    let u32_at = |at| {
        if big_endian {
            be_u32(tiff, at)
        } else {
            le_u32(tiff, at)
        }
    };
    let ifd = usize::try_from(u32_at(4)?).ok()?;
    let entries = usize::from(u16_at(ifd)?);
    for index in 0..entries {
        // Each IFD entry is 12 bytes: tag, type, count, then the value (a SHORT sits first).
        let entry = ifd.checked_add(2)?.checked_add(index.checked_mul(12)?)?;
        if u16_at(entry)? == EXIF_ORIENTATION_TAG {
            return u16_at(entry.checked_add(8)?);
        }
    }
    None
}
