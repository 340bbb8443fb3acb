//! Checksummed text lines, the on-disk record format of the embedded journal and the outage
//! spool: `<crc32 hex> <json>\n`. A line cut short by a crash, or damaged, fails its checksum and
//! is never misread.

/// The line for one JSON record.
pub fn encode(json: &str) -> String {
    format!("{:08x} {json}\n", crc32(json.as_bytes()))
}

/// The JSON of a complete, intact line.
pub fn decode(line: &str) -> Option<&str> {
    let line = line.strip_suffix('\n')?;
    let (sum, json) = line.split_once(' ')?;
    (u32::from_str_radix(sum, 16).ok()? == crc32(json.as_bytes())).then_some(json)
}

/// A failed durable append, and whether the file was cut back to its previous end.
#[derive(Debug)]
pub struct AppendError {
    pub error: std::io::Error,
    /// False: a partial line may remain; the file must not take more lines.
    pub repaired: bool,
}

/// Appends `line` and fsyncs. On failure the file is cut back to where it ended, so a partial
/// line can never sit in front of later, acknowledged ones (they would be unreadable after it).
pub fn append_durably(file: &mut std::fs::File, line: &str) -> Result<(), AppendError> {
    append_with(file, line, true)
}

/// As [`append_durably`] without the fsync (a group commit syncs many appends at once).
pub fn append(file: &mut std::fs::File, line: &str) -> Result<(), AppendError> {
    append_with(file, line, false)
}

fn append_with(file: &mut std::fs::File, line: &str, sync: bool) -> Result<(), AppendError> {
    use std::io::Write;
    let end = file
        .metadata()
        .map_err(|error| AppendError {
            error,
            repaired: true,
        })?
        .len();
    let written =
        file.write_all(line.as_bytes())
            .and_then(|_| if sync { file.sync_data() } else { Ok(()) });
    match written {
        Ok(()) => Ok(()),
        Err(error) => {
            let repaired = file.set_len(end).and_then(|_| file.sync_all()).is_ok();
            Err(AppendError { error, repaired })
        }
    }
}

/// CRC-32 (IEEE), bitwise: records are short and this keeps the dependency tree lean.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn torn_or_damaged_lines_are_never_misread() {
        let good = encode(r#"{"op":"catalog","kind":"campaign"}"#);
        assert_eq!(decode(&good), Some(r#"{"op":"catalog","kind":"campaign"}"#));
        assert_eq!(decode(&good[..good.len() - 5]), None);
        assert_eq!(decode(&good[..good.len() - 1]), None, "no newline: torn");
        assert_eq!(decode(&good.replace("campaign", "campaigm")), None);
    }
}
