//! PNG: a tiny encoder for demo creatives and test fixtures, and the header-only chunk walk used
//! by [`super::inspect`].

use super::{be_u32, bytes_at, truncated, MediaError, MAX_DIMENSION};

pub(super) const SIGNATURE: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];

/// Largest payload of one stored (uncompressed) deflate block.
const MAX_STORED_BLOCK: usize = 0xFFFF;

/// Encodes a valid `width`x`height` PNG filled with one colour. Sides are clamped to 1..=16384.
///
/// Pixels are stored as a 1-bit palette image whose single entry is `rgb`: the zlib stream uses
/// stored (uncompressed) deflate blocks for simplicity, and at 8-bit RGB a 1080x1920 creative
/// would be ~6.2 MB, over [`super::MAX_IMAGE_BYTES`]; one bit per pixel keeps it at ~260 KB.
pub fn solid_png(width: u32, height: u32, rgb: [u8; 3]) -> Vec<u8> {
    let width = width.clamp(1, MAX_DIMENSION);
    let height = height.clamp(1, MAX_DIMENSION);
    // Each scanline is filter type 0 followed by ceil(width / 8) bytes of palette index 0.
    let scanline = 1 + width.div_ceil(8) as usize;
    let raw = vec![0u8; scanline * height as usize];

    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    // Bit depth 1, colour type 3 (palette), deflate, adaptive filtering, no interlace.
    ihdr.extend_from_slice(&[1, 3, 0, 0, 0]);

    let mut out = SIGNATURE.to_vec();
    write_chunk(&mut out, b"IHDR", &ihdr);
    write_chunk(&mut out, b"PLTE", &rgb);
    write_chunk(&mut out, b"IDAT", &zlib_stored(&raw));
    write_chunk(&mut out, b"IEND", &[]);
    out
}

/// Appends one chunk: length, type, data, CRC-32 over type and data. Callers keep chunks far
/// below the 2^31 byte chunk limit.
pub(super) fn write_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
}

/// Wraps `data` in a zlib stream of stored deflate blocks (RFC 1950/1951).
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let blocks = data.len() / MAX_STORED_BLOCK + 1;
    let mut out = Vec::with_capacity(data.len() + blocks * 5 + 6);
    // CMF 0x78: deflate with a 32 KiB window; FLG 0x01 makes CMF*256+FLG a multiple of 31.
    out.extend_from_slice(&[0x78, 0x01]);
    let mut rest = data;
    loop {
        let (block, tail) = rest.split_at(rest.len().min(MAX_STORED_BLOCK));
        let is_final = tail.is_empty();
        // Block header: BFINAL bit, BTYPE 00 (stored); then LEN and its one's complement NLEN.
        out.push(u8::from(is_final));
        let len = block.len() as u16; // at most MAX_STORED_BLOCK
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
        if is_final {
            break;
        }
        rest = tail;
    }
    out.extend_from_slice(&adler32(data).to_be_bytes());
    out
}

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    parts.iter().for_each(|part| hasher.update(part));
    hasher.finalize()
}

fn adler32(data: &[u8]) -> u32 {
    const MOD: u32 = 65_521;
    let (mut a, mut b) = (1u32, 0u32);
    // 5552 is the longest run for which the sums cannot overflow u32 before reduction.
    for run in data.chunks(5552) {
        for &byte in run {
            a += u32::from(byte);
            b += a;
        }
        a %= MOD;
        b %= MOD;
    }
    (b << 16) | a
}

/// Returns (width, height) from IHDR once the chunk sequence is known to be complete.
pub(super) fn parse(data: &[u8]) -> Result<(u32, u32), MediaError> {
    dimensions(data).ok_or_else(truncated)
}

fn dimensions(data: &[u8]) -> Option<(u32, u32)> {
    // IHDR must be the first chunk and is always 13 bytes.
    if be_u32(data, 8)? != 13 || bytes_at(data, 12)? != *b"IHDR" {
        return None;
    }
    let (width, height) = (be_u32(data, 16)?, be_u32(data, 20)?);
    // Walk chunks by their lengths: a complete file ends with IEND exactly at the end of data.
    let mut pos = SIGNATURE.len();
    let mut seen_idat = false;
    loop {
        let len = usize::try_from(be_u32(data, pos)?).ok()?;
        let kind: [u8; 4] = bytes_at(data, pos.checked_add(4)?)?;
        // Length field, type, data, CRC.
        let end = pos.checked_add(12)?.checked_add(len)?;
        if end > data.len() {
            return None;
        }
        match &kind {
            b"IEND" => return (end == data.len() && seen_idat).then_some((width, height)),
            b"IDAT" => seen_idat = true,
            _ => {}
        }
        pos = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_reference_values() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11E6_0398);
        assert_eq!(adler32(&[]), 1);
        // Long input exercises the modular reduction between runs.
        let long = vec![0xFFu8; 100_000];
        let (mut a, mut b) = (1u64, 0u64);
        for &x in &long {
            a = (a + u64::from(x)) % 65_521;
            b = (b + a) % 65_521;
        }
        assert_eq!(u64::from(adler32(&long)), (b << 16) | a);
    }

    /// Inflates a stream of stored blocks, checking every header and the Adler-32 trailer.
    fn inflate_stored(zlib: &[u8]) -> Vec<u8> {
        assert_eq!(&zlib[..2], &[0x78, 0x01]);
        assert_eq!(u16::from_be_bytes([zlib[0], zlib[1]]) % 31, 0);
        let mut pos = 2;
        let mut out = Vec::new();
        loop {
            let header = zlib[pos];
            assert_eq!(header & 0b110, 0, "BTYPE must be stored");
            let len = u16::from_le_bytes([zlib[pos + 1], zlib[pos + 2]]);
            let nlen = u16::from_le_bytes([zlib[pos + 3], zlib[pos + 4]]);
            assert_eq!(len, !nlen);
            pos += 5;
            out.extend_from_slice(&zlib[pos..pos + usize::from(len)]);
            pos += usize::from(len);
            if header & 1 == 1 {
                break;
            }
        }
        assert_eq!(zlib[pos..], adler32(&out).to_be_bytes());
        out
    }

    #[test]
    fn zlib_stored_round_trips_across_block_boundaries() {
        for len in [
            0,
            1,
            MAX_STORED_BLOCK - 1,
            MAX_STORED_BLOCK,
            MAX_STORED_BLOCK + 1,
            200_000,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            assert_eq!(inflate_stored(&zlib_stored(&data)), data, "len {len}");
        }
    }

    #[test]
    fn solid_png_has_valid_chunks_and_pixels() {
        let png = solid_png(1080, 1920, [0x12, 0x34, 0x56]);
        assert!(png.len() < 300_000);
        assert_eq!(png[..8], SIGNATURE);
        let mut pos = 8;
        let mut chunks = Vec::new();
        while pos < png.len() {
            let len = u32::from_be_bytes(png[pos..pos + 4].try_into().unwrap()) as usize;
            let kind = &png[pos + 4..pos + 8];
            let data = &png[pos + 8..pos + 8 + len];
            let crc = u32::from_be_bytes(png[pos + 8 + len..pos + 12 + len].try_into().unwrap());
            assert_eq!(crc, crc32(&[kind, data]));
            chunks.push((kind.to_vec(), data.to_vec()));
            pos += 12 + len;
        }
        let kinds: Vec<&[u8]> = chunks.iter().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(
            kinds,
            [b"IHDR".as_slice(), b"PLTE", b"IDAT", b"IEND"].to_vec()
        );
        assert_eq!(
            chunks[0].1,
            [0, 0, 4, 56, 0, 0, 7, 128, 1, 3, 0, 0, 0].to_vec()
        );
        assert_eq!(chunks[1].1, vec![0x12, 0x34, 0x56]);
        let raw = inflate_stored(&chunks[2].1);
        assert_eq!(raw.len(), 1920 * (1 + 1080 / 8));
        assert!(raw.iter().all(|&b| b == 0));
        assert!(chunks[3].1.is_empty());
        assert_eq!(parse(&png), Ok((1080, 1920)));
    }

    #[test]
    fn solid_png_clamps_sides() {
        assert_eq!(parse(&solid_png(0, 0, [0; 3])), Ok((1, 1)));
        assert_eq!(parse(&solid_png(3, 99_999, [0; 3])), Ok((3, MAX_DIMENSION)));
    }
}
