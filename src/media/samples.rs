//! Header-only fixture builders for tests and demo uploads. The output passes
//! [`super::inspect`] with the given dimensions, but only the headers it reads are real: the
//! files carry no decodable image or video data. Use [`super::png::solid_png`] for a real image.

/// Minimal baseline JPEG: SOI, APP0 (JFIF), SOF0 and EOI. Sides above 65535 are clamped, the
/// largest a JPEG frame header can express.
pub fn sample_jpeg(width: u32, height: u32) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    // APP0, length 16: "JFIF\0", version 1.1, no density units, 1:1 density, no thumbnail.
    out.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x10]);
    out.extend_from_slice(b"JFIF\0");
    out.extend_from_slice(&[1, 1, 0, 0, 1, 0, 1, 0, 0]);
    // SOF0, length 17: 8-bit precision, height, width, three components (Y 2x2, Cb and Cr 1x1).
    out.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 8]);
    out.extend_from_slice(&clamp_u16(height).to_be_bytes());
    out.extend_from_slice(&clamp_u16(width).to_be_bytes());
    out.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

/// Minimal MP4 with one H.264 ("avc1") video track: ftyp, moov{mvhd, trak{tkhd, mdia{hdlr,
/// minf{stbl{stsd}}}}}, mdat. Timescale 1000, so `duration_ms` is stored as is. Sides above
/// 65535 are clamped, the largest a 16.16 tkhd field can express.
pub fn sample_mp4(width: u32, height: u32, duration_ms: u64) -> Vec<u8> {
    Mp4Spec::new(width, height, duration_ms).build()
}

/// Knobs for MP4 fixtures beyond [`sample_mp4`], for the module's own tests.
pub(super) struct Mp4Spec {
    /// Stored (pre-rotation) track size.
    pub(super) width: u32,
    pub(super) height: u32,
    pub(super) timescale: u32,
    /// In `timescale` units; values from u32::MAX up switch mvhd/tkhd to version 1.
    pub(super) duration: u64,
    /// Sample entry type, e.g. "avc1" or "hev1".
    pub(super) codec: [u8; 4],
    /// Adds a 90-degree rotation matrix to tkhd.
    pub(super) rotate_90: bool,
}

impl Mp4Spec {
    pub(super) fn new(width: u32, height: u32, duration_ms: u64) -> Self {
        Mp4Spec {
            width,
            height,
            timescale: 1000,
            duration: duration_ms,
            codec: *b"avc1",
            rotate_90: false,
        }
    }

    pub(super) fn build(&self) -> Vec<u8> {
        let long = self.duration >= u64::from(u32::MAX);
        let version = u8::from(long);
        // Version 0 stores 32-bit creation/modification times and duration, version 1 64-bit.
        let times_and_duration = |middle: &[u8]| {
            let mut v = Vec::new();
            if long {
                v.extend_from_slice(&[0; 16]);
                v.extend_from_slice(middle);
                v.extend_from_slice(&self.duration.to_be_bytes());
            } else {
                v.extend_from_slice(&[0; 8]);
                v.extend_from_slice(middle);
                let short = u32::try_from(self.duration).unwrap_or(u32::MAX);
                v.extend_from_slice(&short.to_be_bytes());
            }
            v
        };

        let ftyp = mp4_box(
            b"ftyp",
            &[b"isom", &0x200u32.to_be_bytes(), b"isomiso2avc1mp41"],
        );
        let mvhd = full_box(
            b"mvhd",
            version,
            0,
            &[
                &times_and_duration(&self.timescale.to_be_bytes()),
                &0x0001_0000u32.to_be_bytes(), // rate 1.0
                &0x0100u16.to_be_bytes(),      // volume 1.0
                &[0; 10],
                &matrix(false),
                &[0; 24],
                &2u32.to_be_bytes(), // next track id
            ],
        );
        let (width, height) = (clamp_u16(self.width), clamp_u16(self.height));
        let tkhd = full_box(
            b"tkhd",
            version,
            0x3, // enabled, in movie
            &[
                // Track id 1 and a reserved word sit between the times and the duration.
                &times_and_duration(&[0, 0, 0, 1, 0, 0, 0, 0]),
                &[0; 16], // reserved, layer, alternate group, volume, reserved
                &matrix(self.rotate_90),
                &(u32::from(width) << 16).to_be_bytes(),
                &(u32::from(height) << 16).to_be_bytes(),
            ],
        );
        let hdlr = full_box(
            b"hdlr",
            0,
            0,
            &[&[0; 4], b"vide", &[0; 12], b"VideoHandler\0"],
        );
        let sample_entry = mp4_box(
            &self.codec,
            &[
                &[0; 6],
                &1u16.to_be_bytes(), // data reference index
                &[0; 16],
                &width.to_be_bytes(),
                &height.to_be_bytes(),
                &0x0048_0000u32.to_be_bytes(), // 72 dpi
                &0x0048_0000u32.to_be_bytes(),
                &[0; 4],
                &1u16.to_be_bytes(), // frames per sample
                &[0; 32],            // compressor name
                &0x0018u16.to_be_bytes(),
                &(-1i16).to_be_bytes(),
            ],
        );
        let stsd = full_box(b"stsd", 0, 0, &[&1u32.to_be_bytes(), &sample_entry]);
        let stbl = mp4_box(b"stbl", &[&stsd]);
        let minf = mp4_box(b"minf", &[&stbl]);
        let mdia = mp4_box(b"mdia", &[&hdlr, &minf]);
        let trak = mp4_box(b"trak", &[&tkhd, &mdia]);
        let moov = mp4_box(b"moov", &[&mvhd, &trak]);
        let mdat = mp4_box(b"mdat", &[&[0; 16]]);
        [ftyp, moov, mdat].concat()
    }
}

fn mp4_box(kind: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
    let body_len: usize = parts.iter().map(|part| part.len()).sum();
    // Fixtures are a few hundred bytes, far below the 32-bit box size limit.
    let size = u32::try_from(body_len + 8).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(body_len + 8);
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(kind);
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

fn full_box(kind: &[u8; 4], version: u8, flags: u32, parts: &[&[u8]]) -> Vec<u8> {
    let [_, f1, f2, f3] = flags.to_be_bytes();
    let mut body = vec![version, f1, f2, f3];
    for part in parts {
        body.extend_from_slice(part);
    }
    mp4_box(kind, &[&body])
}

/// Transformation matrix {a, b, u, c, d, v, x, y, w}: identity, or a quarter turn
/// (a = d = 0, b = 1, c = -1 in 16.16).
fn matrix(rotate_90: bool) -> [u8; 36] {
    let (a, b, c, d) = if rotate_90 {
        (0, 0x0001_0000, 0xFFFF_0000, 0)
    } else {
        (0x0001_0000, 0, 0, 0x0001_0000)
    };
    let values: [u32; 9] = [a, b, 0, c, d, 0, 0, 0, 0x4000_0000];
    let mut out = [0u8; 36];
    for (slot, value) in out.chunks_exact_mut(4).zip(values) {
        slot.copy_from_slice(&value.to_be_bytes());
    }
    out
}

fn clamp_u16(value: u32) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}
