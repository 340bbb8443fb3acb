use super::png::{solid_png, write_chunk};
use super::samples::{sample_jpeg, sample_mp4, Mp4Spec};
use super::*;

const RED: [u8; 3] = [0xE0, 0x20, 0x30];

fn unsupported(msg: &str) -> Result<MediaInfo, MediaError> {
    Err(MediaError::Unsupported(msg.into()))
}

fn is_dimensions_err(r: Result<MediaInfo, MediaError>) -> bool {
    matches!(r, Err(MediaError::InvalidDimensions(_)))
}

fn is_aspect_err(r: Result<MediaInfo, MediaError>) -> bool {
    matches!(r, Err(MediaError::InvalidAspectRatio(_)))
}

fn is_duration_err(r: Result<MediaInfo, MediaError>) -> bool {
    matches!(r, Err(MediaError::InvalidDuration(_)))
}

fn image(mime: &'static str, width: u32, height: u32) -> Result<MediaInfo, MediaError> {
    Ok(MediaInfo {
        format: MediaFormat::Image,
        mime,
        width,
        height,
        duration_ms: None,
    })
}

/// Appends a complete top-level box, keeping the box layout tiling the file.
fn with_box(mut mp4: Vec<u8>, kind: &[u8; 4], body_len: usize) -> Vec<u8> {
    mp4.extend_from_slice(&u32::try_from(body_len + 8).unwrap().to_be_bytes());
    mp4.extend_from_slice(kind);
    mp4.resize(mp4.len() + body_len, 0);
    mp4
}

/// A RIFF/WEBP file holding a single chunk.
fn webp(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = b"RIFF".to_vec();
    let padded = body.len() + body.len() % 2;
    out.extend_from_slice(&u32::try_from(4 + 8 + padded).unwrap().to_le_bytes());
    out.extend_from_slice(b"WEBP");
    out.extend_from_slice(kind);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
    out.extend_from_slice(body);
    out.resize(8 + 4 + 8 + padded, 0);
    out
}

fn webp_vp8x(width: u32, height: u32) -> Vec<u8> {
    let mut body = vec![0u8; 10];
    body[4..7].copy_from_slice(&(width - 1).to_le_bytes()[..3]);
    body[7..10].copy_from_slice(&(height - 1).to_le_bytes()[..3]);
    webp(b"VP8X", &body)
}

fn webp_vp8l(width: u32, height: u32) -> Vec<u8> {
    let bits = (width - 1) | ((height - 1) << 14);
    let mut body = vec![0x2F];
    body.extend_from_slice(&bits.to_le_bytes());
    webp(b"VP8L", &body)
}

fn webp_vp8(width: u16, height: u16) -> Vec<u8> {
    let mut body = vec![0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A];
    body.extend_from_slice(&width.to_le_bytes());
    body.extend_from_slice(&height.to_le_bytes());
    body.extend_from_slice(&[0; 7]);
    webp(b"VP8 ", &body)
}

/// A JPEG whose APP1 EXIF block (little- or big-endian TIFF) carries `orientation`.
fn jpeg_with_orientation(width: u32, height: u32, orientation: u16, big_endian: bool) -> Vec<u8> {
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut tiff = if big_endian {
        b"MM".to_vec()
    } else {
        b"II".to_vec()
    };
    tiff.extend_from_slice(&u16b(42));
    tiff.extend_from_slice(&u32b(8)); // IFD0 right after the header
    tiff.extend_from_slice(&u16b(2)); // two entries; orientation second
    for (tag, value) in [(0x010F, 0u16), (0x0112, orientation)] {
        tiff.extend_from_slice(&u16b(tag));
        tiff.extend_from_slice(&u16b(3)); // SHORT
        tiff.extend_from_slice(&u32b(1));
        tiff.extend_from_slice(&u16b(value));
        tiff.extend_from_slice(&[0, 0]);
    }
    tiff.extend_from_slice(&u32b(0));
    let mut app1 = vec![0xFF, 0xE1];
    app1.extend_from_slice(&u16::try_from(2 + 6 + tiff.len()).unwrap().to_be_bytes());
    app1.extend_from_slice(b"Exif\0\0");
    app1.extend_from_slice(&tiff);
    let mut jpeg = sample_jpeg(width, height);
    jpeg.splice(2..2, app1);
    jpeg
}

/// Every valid fixture with its expected result, for the prefix and mutation sweeps.
fn valid_fixtures() -> Vec<Vec<u8>> {
    vec![
        solid_png(540, 960, RED),
        sample_jpeg(1080, 1920),
        jpeg_with_orientation(1920, 1080, 6, false),
        jpeg_with_orientation(1920, 1080, 8, true),
        webp_vp8x(1080, 1920),
        webp_vp8l(1080, 1920),
        webp_vp8(1080, 1920),
        sample_mp4(1080, 1920, 10_000),
        Mp4Spec {
            duration: 5_000_000_000,
            timescale: 1_000_000_000,
            ..Mp4Spec::new(1080, 1920, 0)
        }
        .build(),
        Mp4Spec {
            rotate_90: true,
            ..Mp4Spec::new(1920, 1080, 10_000)
        }
        .build(),
    ]
}

#[test]
fn png_portrait_is_accepted() {
    assert_eq!(
        inspect(&solid_png(1080, 1920, RED)),
        image("image/png", 1080, 1920)
    );
    assert_eq!(
        inspect(&solid_png(540, 960, RED)),
        image("image/png", 540, 960)
    );
}

#[test]
fn png_rejections() {
    assert!(is_aspect_err(inspect(&solid_png(1920, 1080, RED))));
    assert!(is_aspect_err(inspect(&solid_png(1000, 1000, RED))));
    assert!(is_dimensions_err(inspect(&solid_png(300, 533, RED))));
    assert!(is_dimensions_err(inspect(&solid_png(539, 960, RED))));

    let png = solid_png(1080, 1920, RED);
    assert_eq!(inspect(&png[..png.len() - 10]), unsupported(TRUNCATED));
    let mut trailing = png.clone();
    trailing.push(0);
    assert_eq!(inspect(&trailing), unsupported(TRUNCATED));

    // A real PNG grown past the limit by a large ancillary chunk before IEND.
    let iend_at = png.len() - 12;
    let mut big = png[..iend_at].to_vec();
    let mut text = b"Comment\0".to_vec();
    text.resize(6 * 1024 * 1024, b'a');
    write_chunk(&mut big, b"tEXt", &text);
    big.extend_from_slice(&png[iend_at..]);
    assert_eq!(
        inspect(&big),
        Err(MediaError::TooLarge {
            limit: MAX_IMAGE_BYTES
        })
    );
    // The byte limit applies before the structure is even looked at.
    let mut blob = png::SIGNATURE.to_vec();
    blob.resize(MAX_IMAGE_BYTES + 1, 0);
    assert_eq!(
        inspect(&blob),
        Err(MediaError::TooLarge {
            limit: MAX_IMAGE_BYTES
        })
    );
}

#[test]
fn png_without_idat_or_with_bad_ihdr_is_corrupt() {
    let png = solid_png(1080, 1920, RED);
    let mut no_idat = png::SIGNATURE.to_vec();
    no_idat.extend_from_slice(&png[8..33]); // IHDR chunk
    no_idat.extend_from_slice(&png[png.len() - 12..]); // IEND
    assert_eq!(inspect(&no_idat), unsupported(TRUNCATED));
    let mut bad_ihdr = png.clone();
    bad_ihdr[11] = 14;
    assert_eq!(inspect(&bad_ihdr), unsupported(TRUNCATED));
}

#[test]
fn jpeg_headers() {
    assert_eq!(
        inspect(&sample_jpeg(1080, 1920)),
        image("image/jpeg", 1080, 1920)
    );
    let jpeg = sample_jpeg(1080, 1920);
    assert_eq!(inspect(&jpeg[..jpeg.len() - 1]), unsupported(TRUNCATED));
    let mut padded = jpeg.clone();
    padded.push(0);
    assert_eq!(inspect(&padded), unsupported(TRUNCATED));
    assert!(is_aspect_err(inspect(&sample_jpeg(1920, 1080))));
    assert!(is_dimensions_err(inspect(&sample_jpeg(0, 0))));
    assert!(is_dimensions_err(inspect(&sample_jpeg(17_000, 30_222))));

    // Fill bytes before a marker are legal.
    let mut filled = jpeg.clone();
    filled.splice(2..2, [0xFF, 0xFF]);
    assert_eq!(inspect(&filled), image("image/jpeg", 1080, 1920));
    // SOS before any frame header.
    let mut sos_first = vec![0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02];
    sos_first.extend_from_slice(&jpeg[2..]);
    assert_eq!(inspect(&sos_first), unsupported(TRUNCATED));
}

#[test]
fn jpeg_exif_orientation_gives_display_size() {
    for orientation in 5..=8 {
        for big_endian in [false, true] {
            let jpeg = jpeg_with_orientation(1920, 1080, orientation, big_endian);
            assert_eq!(inspect(&jpeg), image("image/jpeg", 1080, 1920));
        }
    }
    for orientation in [1, 3, 9] {
        let jpeg = jpeg_with_orientation(1920, 1080, orientation, false);
        assert!(is_aspect_err(inspect(&jpeg)));
    }
    // Broken EXIF is ignored, not fatal.
    let mut jpeg = jpeg_with_orientation(1080, 1920, 6, false);
    jpeg[16] = 0xFF; // IFD0 offset points far outside the block
    assert_eq!(inspect(&jpeg), image("image/jpeg", 1080, 1920));
}

#[test]
fn webp_headers() {
    assert_eq!(
        inspect(&webp_vp8x(1080, 1920)),
        image("image/webp", 1080, 1920)
    );
    assert_eq!(
        inspect(&webp_vp8l(1080, 1920)),
        image("image/webp", 1080, 1920)
    );
    assert_eq!(
        inspect(&webp_vp8(1080, 1920)),
        image("image/webp", 1080, 1920)
    );
    assert!(is_aspect_err(inspect(&webp_vp8l(1920, 1080))));
    assert!(is_dimensions_err(inspect(&webp_vp8x(16_385, 29_128))));

    let ok = webp_vp8x(1080, 1920);
    assert_eq!(inspect(&ok[..ok.len() - 1]), unsupported(TRUNCATED));
    let mut extra = ok.clone();
    extra.extend_from_slice(&[0; 4]);
    assert_eq!(inspect(&extra), unsupported(TRUNCATED));
    let mut wrong_chunk = ok.clone();
    wrong_chunk[12..16].copy_from_slice(b"ALPH");
    assert_eq!(inspect(&wrong_chunk), unsupported(TRUNCATED));
}

#[test]
fn mp4_headers() {
    assert_eq!(
        inspect(&sample_mp4(1080, 1920, 10_000)),
        Ok(MediaInfo {
            format: MediaFormat::Video,
            mime: "video/mp4",
            width: 1080,
            height: 1920,
            duration_ms: Some(10_000),
        })
    );
    assert_eq!(
        inspect(&sample_mp4(1080, 1920, MAX_VIDEO_MS)).map(|i| i.duration_ms),
        Ok(Some(MAX_VIDEO_MS))
    );
    assert!(is_duration_err(inspect(&sample_mp4(1080, 1920, 31_000))));
    assert!(is_duration_err(inspect(&sample_mp4(1080, 1920, 0))));
    assert!(is_aspect_err(inspect(&sample_mp4(1920, 1080, 10_000))));
    assert!(is_dimensions_err(inspect(&sample_mp4(360, 640, 10_000))));
    // Aspect ratio is judged before duration.
    assert!(is_aspect_err(inspect(&sample_mp4(1920, 1080, 60_000))));

    let hevc = Mp4Spec {
        codec: *b"hev1",
        ..Mp4Spec::new(1080, 1920, 10_000)
    };
    assert_eq!(inspect(&hevc.build()), unsupported("video must be H.264"));
    let avc3 = Mp4Spec {
        codec: *b"avc3",
        ..Mp4Spec::new(1080, 1920, 10_000)
    };
    assert!(inspect(&avc3.build()).is_ok());

    let no_timescale = Mp4Spec {
        timescale: 0,
        ..Mp4Spec::new(1080, 1920, 10_000)
    };
    assert!(is_duration_err(inspect(&no_timescale.build())));
    let unknown = Mp4Spec::new(1080, 1920, u64::from(u32::MAX) - 1);
    let mut unknown = unknown.build();
    // Patch the v0 mvhd duration to the all-ones "unknown" value.
    let at = unknown.windows(4).position(|w| w == b"mvhd").unwrap() + 4 + 16;
    unknown[at..at + 4].copy_from_slice(&[0xFF; 4]);
    assert!(is_duration_err(inspect(&unknown)));
}

#[test]
fn mp4_version_1_and_rotation() {
    // 64-bit duration forces version 1 mvhd and tkhd: 5 s at a nanosecond timescale.
    let long = Mp4Spec {
        duration: 5_000_000_000,
        timescale: 1_000_000_000,
        ..Mp4Spec::new(1080, 1920, 0)
    };
    assert_eq!(
        inspect(&long.build()).map(|i| (i.width, i.height, i.duration_ms)),
        Ok((1080, 1920, Some(5_000)))
    );
    let too_long = Mp4Spec {
        duration: 31_000_000_000,
        ..long
    };
    assert!(is_duration_err(inspect(&too_long.build())));

    let rotated = Mp4Spec {
        rotate_90: true,
        ..Mp4Spec::new(1920, 1080, 10_000)
    };
    assert_eq!(
        inspect(&rotated.build()).map(|i| (i.width, i.height)),
        Ok((1080, 1920))
    );
}

#[test]
fn mp4_box_layout() {
    let mp4 = sample_mp4(1080, 1920, 10_000);
    assert_eq!(inspect(&mp4[..mp4.len() - 1]), unsupported(TRUNCATED));
    let mut trailing = mp4.clone();
    trailing.extend_from_slice(&[0; 3]);
    assert_eq!(inspect(&trailing), unsupported(TRUNCATED));

    // Extra complete boxes are fine, including a 6 MiB one (over the image limit only).
    assert!(inspect(&with_box(mp4.clone(), b"free", 6 * 1024 * 1024)).is_ok());
    assert_eq!(
        inspect(&with_box(mp4.clone(), b"free", MAX_VIDEO_BYTES)),
        Err(MediaError::TooLarge {
            limit: MAX_VIDEO_BYTES
        })
    );

    // 64-bit largesize and size 0 ("to end of file").
    let mut large = mp4.clone();
    large.extend_from_slice(&1u32.to_be_bytes());
    large.extend_from_slice(b"free");
    large.extend_from_slice(&20u64.to_be_bytes());
    large.extend_from_slice(&[0; 4]);
    assert!(inspect(&large).is_ok());
    let mut to_end = mp4.clone();
    to_end.extend_from_slice(&0u32.to_be_bytes());
    to_end.extend_from_slice(b"mdat");
    to_end.extend_from_slice(&[0; 100]);
    assert!(inspect(&to_end).is_ok());

    // A largesize smaller than its own header is corrupt.
    let mut tiny = mp4.clone();
    tiny.extend_from_slice(&1u32.to_be_bytes());
    tiny.extend_from_slice(b"free");
    tiny.extend_from_slice(&8u64.to_be_bytes());
    assert_eq!(inspect(&tiny), unsupported(TRUNCATED));

    // Without mdat, or with ftyp not first.
    let mdat_at = mp4.len() - 24;
    assert_eq!(inspect(&mp4[..mdat_at]), unsupported(TRUNCATED));
    let mut moved = with_box(Vec::new(), b"free", 0);
    moved.extend_from_slice(&mp4);
    assert_eq!(inspect(&moved), unsupported(NOT_SUPPORTED));

    // QuickTime brand is not MP4.
    let mut mov = mp4.clone();
    mov[8..12].copy_from_slice(b"qt  ");
    assert_eq!(inspect(&mov), unsupported(NOT_SUPPORTED));

    // An audio-only file has no video track.
    let mut audio = mp4.clone();
    let at = audio.windows(4).position(|w| w == b"vide").unwrap();
    audio[at..at + 4].copy_from_slice(b"soun");
    assert_eq!(inspect(&audio), unsupported("MP4 has no video track"));
}

#[test]
fn other_content_is_unsupported() {
    for data in [
        &b"hello"[..],
        b"",
        b"GIF89a\x01\x00\x01\x00",
        b"\x00\x00\x00\x18ftypqt  ",
        b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
        b"RIFF\x04\x00\x00\x00WAVE",
    ] {
        assert_eq!(inspect(data), unsupported(NOT_SUPPORTED));
    }
}

#[test]
fn aspect_tolerance_is_two_percent() {
    assert!(is_portrait_9_16(1080, 1920));
    assert!(is_portrait_9_16(540, 960));
    assert!(is_portrait_9_16(1101, 1920)); // +1.94%
    assert!(!is_portrait_9_16(1102, 1920)); // +2.04%
    assert!(is_portrait_9_16(1059, 1920)); // -1.94%
    assert!(!is_portrait_9_16(1058, 1920)); // -2.04%
    assert!(!is_portrait_9_16(1920, 1080));
    assert!(!is_portrait_9_16(1000, 1000));
}

#[test]
fn every_prefix_of_a_valid_file_is_rejected_without_panicking() {
    for fixture in valid_fixtures() {
        assert!(inspect(&fixture).is_ok());
        for len in 0..fixture.len() {
            assert!(inspect(&fixture[..len]).is_err(), "prefix {len} accepted");
        }
    }
}

#[test]
fn garbage_and_mutations_never_panic() {
    // xorshift64: deterministic pseudo-random bytes without dependencies.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let magics: [&[u8]; 5] = [
        b"",
        &[0xFF, 0xD8, 0xFF],
        &png::SIGNATURE,
        b"RIFF\x00\x00\x00\x00WEBP",
        b"\x00\x00\x00\x00ftypisom",
    ];
    for round in 0..2_000 {
        let mut data = magics[round % magics.len()].to_vec();
        let len = (next() % 300) as usize;
        data.extend((0..len).map(|_| next() as u8));
        let _ = inspect(&data);
    }
    for fixture in valid_fixtures() {
        for _ in 0..300 {
            let mut data = fixture.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % data.len() as u64) as usize;
                data[at] = next() as u8;
            }
            let _ = inspect(&data);
        }
    }
}

#[test]
fn errors_display_human_messages() {
    assert_eq!(
        MediaError::TooLarge {
            limit: MAX_VIDEO_BYTES
        }
        .to_string(),
        "file is larger than the 30 MiB limit"
    );
    assert_eq!(
        MediaError::Unsupported(TRUNCATED.into()).to_string(),
        "unsupported media: file is truncated or corrupt"
    );
    let err = inspect(&sample_mp4(1080, 1920, 31_000)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid duration: video is 31000 ms long; the maximum is 30000 ms"
    );
    let err: Box<dyn std::error::Error> = Box::new(inspect(&solid_png(300, 533, RED)).unwrap_err());
    assert_eq!(
        err.to_string(),
        "invalid dimensions: 300x533 is smaller than the minimum 540x960"
    );
    assert_eq!(MediaFormat::Image.as_str(), "image");
    assert_eq!(MediaFormat::Video.as_str(), "video");
}
