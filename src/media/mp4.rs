//! MP4 (ISO BMFF) header reading: top-level box layout, movie duration and the video track.
//!
//! Boxes are only followed along the fixed path moov/trak/mdia/minf/stbl/stsd, so there is no
//! recursion and nesting depth is bounded by construction; each level is a linear walk.

use super::{be_u32, be_u64, bytes_at, truncated, MediaError};

/// Returns display (width, height) and the movie duration in ms (0 when unknown).
pub(super) fn parse(data: &[u8]) -> Result<((u32, u32), u64), MediaError> {
    let mut moov = None;
    let mut has_mdat = false;
    // Walking every top-level box proves their sizes tile the file exactly.
    for (index, item) in Boxes::new(data).enumerate() {
        let b = item?;
        match &b.kind {
            b"ftyp" if index == 0 => {}
            _ if index == 0 => return Err(truncated()),
            // A second moov would make the metadata ambiguous.
            b"moov" if moov.is_some() => return Err(truncated()),
            b"moov" => moov = Some(b.body),
            b"mdat" => has_mdat = true,
            _ => {}
        }
    }
    let moov = match (moov, has_mdat) {
        (Some(moov), true) => moov,
        _ => return Err(truncated()),
    };
    let duration_ms = movie_duration_ms(find_box(moov, b"mvhd")?).ok_or_else(truncated)?;
    let track = video_track(moov)?;
    if !matches!(&track.codec, b"avc1" | b"avc3") {
        return Err(MediaError::Unsupported("video must be H.264".into()));
    }
    Ok(((track.width, track.height), duration_ms))
}

struct VideoTrack {
    width: u32,
    height: u32,
    /// Type of the first sample entry in stsd, e.g. "avc1".
    codec: [u8; 4],
}

/// The first track whose handler is "vide".
fn video_track(moov: &[u8]) -> Result<VideoTrack, MediaError> {
    for item in Boxes::new(moov) {
        let trak = item?;
        if &trak.kind != b"trak" {
            continue;
        }
        let mdia = find_box(trak.body, b"mdia")?;
        // hdlr: version/flags, pre_defined, then handler_type.
        let handler: [u8; 4] = bytes_at(find_box(mdia, b"hdlr")?, 8).ok_or_else(truncated)?;
        if &handler != b"vide" {
            continue;
        }
        let (width, height) =
            track_dimensions(find_box(trak.body, b"tkhd")?).ok_or_else(truncated)?;
        let stbl = find_box(find_box(mdia, b"minf")?, b"stbl")?;
        let codec = first_sample_entry(find_box(stbl, b"stsd")?)?;
        return Ok(VideoTrack {
            width,
            height,
            codec,
        });
    }
    Err(MediaError::Unsupported("MP4 has no video track".into()))
}

/// duration * 1000 / timescale; 0 when the timescale is 0 or the duration is the all-ones
/// "unknown" value, which the caller rejects as an invalid duration.
fn movie_duration_ms(mvhd: &[u8]) -> Option<u64> {
    // After version/flags: creation and modification times, timescale, duration; version 1
    // widens the times and the duration to 64 bits.
    let (timescale, duration) = match *mvhd.first()? {
        0 => (
            be_u32(mvhd, 12)?,
            be_u32(mvhd, 16).map(|d| if d == u32::MAX { 0 } else { u64::from(d) })?,
        ),
        1 => (
            be_u32(mvhd, 20)?,
            be_u64(mvhd, 24).map(|d| if d == u64::MAX { 0 } else { d })?,
        ),
        _ => return None,
    };
    if timescale == 0 {
        return Some(0);
    }
    // u128 cannot overflow here; absurd results saturate and fail the duration limit anyway.
    let ms = u128::from(duration) * 1000 / u128::from(timescale);
    Some(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Width and height (16.16 fixed point, integer part) from tkhd, swapped when the matrix turns
/// the track by 90 or 270 degrees: phones record portrait video as landscape frames plus such a
/// matrix, and the aspect rule must judge what viewers see.
fn track_dimensions(tkhd: &[u8]) -> Option<(u32, u32)> {
    // The matrix follows the version-dependent times, track id, duration and a fixed 16 bytes.
    let matrix_at: usize = match *tkhd.first()? {
        0 => 40,
        1 => 52,
        _ => return None,
    };
    let entry = |i: usize| be_u32(tkhd, matrix_at + 4 * i);
    // Matrix {a, b, u, c, d, v, x, y, w}: a quarter turn has a = d = 0 and b, c non-zero.
    let (a, b, c, d) = (entry(0)?, entry(1)?, entry(3)?, entry(4)?);
    let width = be_u32(tkhd, matrix_at + 36)? >> 16;
    let height = be_u32(tkhd, matrix_at + 40)? >> 16;
    Some(if a == 0 && d == 0 && b != 0 && c != 0 {
        (height, width)
    } else {
        (width, height)
    })
}

/// Type of the first sample entry: stsd is version/flags, entry_count, then entry boxes.
fn first_sample_entry(stsd: &[u8]) -> Result<[u8; 4], MediaError> {
    if be_u32(stsd, 4).ok_or_else(truncated)? == 0 {
        return Err(truncated());
    }
    let entries = stsd.get(8..).ok_or_else(truncated)?;
    match Boxes::new(entries).next() {
        Some(entry) => Ok(entry?.kind),
        None => Err(truncated()),
    }
}

/// Body of the first child box of `kind`; a missing box means the file is corrupt.
fn find_box<'a>(data: &'a [u8], kind: &[u8; 4]) -> Result<&'a [u8], MediaError> {
    for item in Boxes::new(data) {
        let b = item?;
        if &b.kind == kind {
            return Ok(b.body);
        }
    }
    Err(truncated())
}

struct Mp4Box<'a> {
    kind: [u8; 4],
    /// Bytes after the size/type header.
    body: &'a [u8],
}

/// Consecutive boxes that must exactly tile `data`. A box that is undersized or overruns its
/// parent yields one error and ends the walk; nothing is allocated per box.
struct Boxes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Boxes<'a> {
    fn new(data: &'a [u8]) -> Self {
        Boxes { data, pos: 0 }
    }

    fn read(&self) -> Option<(Mp4Box<'a>, usize)> {
        let rest = self.data.get(self.pos..)?;
        let size32 = be_u32(rest, 0)?;
        let kind = bytes_at(rest, 4)?;
        let (header, size) = match size32 {
            // Size 0: the box runs to the end of its parent (typically a final mdat).
            0 => (8, rest.len()),
            // Size 1: a 64-bit largesize follows the type.
            1 => (16, usize::try_from(be_u64(rest, 8)?).ok()?),
            n => (8, usize::try_from(n).ok()?),
        };
        // An inverted or overlong range (size < header or past the parent) yields None.
        let body = rest.get(header..size)?;
        Some((Mp4Box { kind, body }, size))
    }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<Mp4Box<'a>, MediaError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.data.len() {
            return None;
        }
        match self.read() {
            Some((b, size)) => {
                // size >= 8 guarantees progress; it fits in the remaining data, so no overflow.
                self.pos += size;
                Some(Ok(b))
            }
            None => {
                self.pos = self.data.len();
                Some(Err(truncated()))
            }
        }
    }
}
