//! Checksummed text lines, the on-disk record format of every file the service appends to (the
//! embedded journal and the outage spool): `<crc32 hex> <json>\n`, and the one policy for
//! reading such a file back.
//!
//! # Reading policy
//!
//! An append that fails is cut back to where the file ended ([`append`]), so the only damage a
//! crash can leave is a torn *tail*: the last line without its newline (the write stopped), or
//! lines holding NUL bytes (blocks the file grew into that never reached the disk read back as
//! zeros), with no intact line after them. Those bytes were never acknowledged, so [`read`]
//! reports them and the caller cuts them off.
//!
//! Anything else is not a crash: a complete line that fails its checksum without a NUL in it
//! (a flipped bit, a CRLF conversion), or any bad line *followed by an intact one*, was damaged
//! after it was acknowledged. Such a file is never cut and never skipped over: [`read`] fails
//! with [`LogError::Damaged`], naming the file and byte offset, and the service refuses to
//! start. The operator stops it and runs
//! `statusads quarantine <file>` ([`quarantine`]), which moves every damaged line into
//! `<file>.quarantine` (raw bytes, for inspection) and keeps every intact record, in order.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// The line for one JSON record.
pub fn encode(json: &str) -> String {
    format!("{:08x} {json}\n", crc32fast::hash(json.as_bytes()))
}

/// The JSON of a complete, intact line (with its `\n`).
pub fn decode(line: &[u8]) -> Option<&str> {
    let line = line.strip_suffix(b"\n")?;
    let line = std::str::from_utf8(line).ok()?;
    let (sum, json) = line.split_once(' ')?;
    (sum.len() == 8 && u32::from_str_radix(sum, 16).ok()? == crc32fast::hash(json.as_bytes()))
        .then_some(json)
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{}: the record at byte {offset} ({len} bytes) is damaged and intact records follow it, \
         so nothing was cut. Stop the service and run `statusads quarantine {}`: it moves the \
         damaged bytes to {}.quarantine and keeps every intact record",
        path.display(), path.display(), path.display()
    )]
    Damaged {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    #[error(
        "{}: the record at byte {offset} is intact but this build cannot read it ({reason}); \
         nothing was cut",
        path.display()
    )]
    Unreadable {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
}

/// Where the intact part of a file ends.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tail {
    /// Bytes to keep: every intact record.
    pub keep_len: u64,
    /// Bytes of torn tail after them (a crash mid-append; never acknowledged).
    pub torn_bytes: u64,
}

/// Reads every intact record of `path` in order (a missing file has none), under the policy
/// above. `each` may refuse a record (it cannot be parsed): that stops the read.
pub fn read(
    path: &Path,
    mut each: impl FnMut(&str) -> Result<(), String>,
) -> Result<Tail, LogError> {
    let io = |source| LogError::Io {
        path: path.to_owned(),
        source,
    };
    let file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Tail::default()),
        Err(err) => return Err(io(err)),
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut offset = 0u64;
    // The first bad line: the start of a torn tail, unless an intact line follows it.
    let mut bad: Option<(u64, u64)> = None;
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(io)? as u64;
        if read == 0 {
            break;
        }
        match (decode(&line), bad) {
            (Some(_), Some((at, len))) => {
                return Err(LogError::Damaged {
                    path: path.to_owned(),
                    offset: at,
                    len,
                })
            }
            (Some(json), None) => each(json).map_err(|reason| LogError::Unreadable {
                path: path.to_owned(),
                offset,
                reason,
            })?,
            (None, None) if torn(&line) => bad = Some((offset, read)),
            (None, None) => {
                return Err(LogError::Damaged {
                    path: path.to_owned(),
                    offset,
                    len: read,
                })
            }
            // Past a torn line, a bad line can be the rest of a write whose start never reached
            // the disk (blocks land out of order in a crash): only an intact line proves damage.
            (None, Some(_)) => {}
        }
        offset += read;
    }
    let keep_len = bad.map_or(offset, |(at, _)| at);
    Ok(Tail {
        keep_len,
        torn_bytes: offset - keep_len,
    })
}

/// Takes this process's exclusive lock on an appended file (`flock`, released when the file is
/// closed): two processes appending to one journal or spool, or a `quarantine` rewriting it
/// under a running service, would lose acknowledged records.
pub fn lock(file: &File, path: &Path) -> std::io::Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(std::io::Error::other(format!(
            "{} is in use by another statusads process (one per data_dir; stop it first)",
            path.display()
        ))),
        Err(std::fs::TryLockError::Error(err)) => Err(err),
    }
}

/// Whether a bad line can be what a crash leaves: cut short (no newline) or holding zeros.
fn torn(line: &[u8]) -> bool {
    !line.ends_with(b"\n") || line.contains(&0)
}

/// What [`quarantine`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Quarantined {
    pub kept_records: u64,
    /// `(offset, length)` in the original file of each line moved aside.
    pub moved: Vec<(u64, u64)>,
    pub quarantine_file: PathBuf,
}

/// Moves every damaged line of `path` (checksum failed, or torn) to `<path>.quarantine`,
/// appended as raw bytes, and rewrites `path` with the intact records only, in order. The
/// rewrite goes to a temporary file that is fsynced and renamed over `path`, so a crash leaves
/// either the old file or the new one. Run it with the service stopped.
pub fn quarantine(path: &Path) -> Result<Quarantined, LogError> {
    let io = |source| LogError::Io {
        path: path.to_owned(),
        source,
    };
    let quarantine_file = suffixed(path, "quarantine");
    let repaired = suffixed(path, "repairing");
    let original = File::open(path).map_err(io)?;
    lock(&original, path).map_err(io)?;
    let mut reader = BufReader::new(original);
    let mut kept = std::io::BufWriter::new(File::create(&repaired).map_err(io)?);
    let mut moved_bytes = Vec::new();
    let mut done = Quarantined {
        quarantine_file: quarantine_file.clone(),
        ..Quarantined::default()
    };
    let (mut line, mut offset) = (Vec::new(), 0u64);
    loop {
        line.clear();
        let read = reader.read_until(b'\n', &mut line).map_err(io)? as u64;
        if read == 0 {
            break;
        }
        if decode(&line).is_some() {
            kept.write_all(&line).map_err(io)?;
            done.kept_records += 1;
        } else {
            moved_bytes.extend_from_slice(&line);
            done.moved.push((offset, read));
        }
        offset += read;
    }
    if !moved_bytes.is_empty() {
        let mut aside = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&quarantine_file)
            .map_err(io)?;
        aside.write_all(&moved_bytes).map_err(io)?;
        aside.sync_all().map_err(io)?;
    }
    let kept = kept.into_inner().map_err(|e| io(e.into_error()))?;
    kept.sync_all().map_err(io)?;
    std::fs::rename(&repaired, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(done)
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// A failed append, and whether the file was cut back to its previous end.
#[derive(Debug)]
pub struct AppendError {
    pub error: std::io::Error,
    /// False: a partial line may remain; the file must not take more lines.
    pub repaired: bool,
}

/// Appends `bytes` (whole lines) and fsyncs. On failure the file is cut back to where it ended,
/// so a partial line never sits in front of later, acknowledged ones.
pub fn append_durably(file: &mut File, bytes: &[u8]) -> Result<(), AppendError> {
    append_with(file, bytes, true)
}

/// As [`append_durably`] without the fsync (a group commit syncs many appends at once).
pub fn append(file: &mut File, bytes: &[u8]) -> Result<(), AppendError> {
    append_with(file, bytes, false)
}

fn append_with(file: &mut File, bytes: &[u8], sync: bool) -> Result<(), AppendError> {
    let end = file
        .metadata()
        .map_err(|error| AppendError {
            error,
            repaired: true,
        })?
        .len();
    let written = file
        .write_all(bytes)
        .and_then(|_| if sync { file.sync_data() } else { Ok(()) });
    match written {
        Ok(()) => Ok(()),
        Err(error) => Err(AppendError {
            error,
            repaired: cut_back(file, end).is_ok(),
        }),
    }
}

/// Cuts what [`read`] found torn off the end of `file` (at `path`), saying so in the log; new
/// records then follow the last intact one instead of hiding behind the torn bytes.
pub fn cut_torn_tail(file: &File, path: &Path, tail: Tail) -> std::io::Result<()> {
    if tail.torn_bytes > 0 {
        tracing::warn!(
            file = %path.display(),
            offset = tail.keep_len,
            bytes = tail.torn_bytes,
            "file ends in a torn write (a crash mid-append, never acknowledged); cutting it off"
        );
    }
    cut_back(file, tail.keep_len)
}

/// Cuts `file` back to `len` bytes, durably.
pub fn cut_back(file: &File, len: u64) -> std::io::Result<()> {
    file.set_len(len)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log file in a directory removed when the test ends, passed or not.
    fn scratch(name: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::Builder::new()
            .prefix(&format!("statusads-lines-{name}-"))
            .tempdir()
            .unwrap();
        let path = dir.path().join("log");
        (dir, path)
    }

    fn records(path: &Path) -> Result<(Vec<String>, Tail), LogError> {
        let mut seen = Vec::new();
        let tail = read(path, |json| {
            seen.push(json.to_owned());
            Ok(())
        })?;
        Ok((seen, tail))
    }

    fn file_of(records: &[&str]) -> String {
        records.iter().map(|r| encode(r)).collect()
    }

    #[test]
    fn torn_or_damaged_lines_are_never_misread() {
        let good = encode(r#"{"op":"catalog","kind":"campaign"}"#);
        let json = Some(r#"{"op":"catalog","kind":"campaign"}"#);
        assert_eq!(decode(good.as_bytes()), json);
        assert_eq!(decode(&good.as_bytes()[..good.len() - 5]), None);
        assert_eq!(
            decode(&good.as_bytes()[..good.len() - 1]),
            None,
            "no newline: torn"
        );
        assert_eq!(
            decode(good.replace("campaign", "campaigm").as_bytes()),
            None
        );
        let mut invalid_utf8 = good.clone().into_bytes();
        invalid_utf8[12] = 0xff;
        assert_eq!(decode(&invalid_utf8), None);
    }

    #[test]
    fn a_torn_tail_is_cut_and_nothing_before_it() {
        let (_dir, path) = scratch("torn");
        let mut text = file_of(&["1", "2", "3"]);
        let intact = text.len() as u64;
        text.push_str(&encode("4")[..5]);
        std::fs::write(&path, &text).unwrap();
        let (seen, tail) = records(&path).unwrap();
        assert_eq!(seen, ["1", "2", "3"]);
        assert_eq!(
            tail,
            Tail {
                keep_len: intact,
                torn_bytes: 5
            }
        );
    }

    #[test]
    fn several_bad_lines_at_the_end_are_one_torn_tail() {
        let (_dir, path) = scratch("zeros");
        let mut bytes = file_of(&["1"]).into_bytes();
        let intact = bytes.len() as u64;
        bytes.extend_from_slice(b"\0\0\0\n\0\0\n\0");
        std::fs::write(&path, &bytes).unwrap();
        let (seen, tail) = records(&path).unwrap();
        assert_eq!(seen, ["1"]);
        assert_eq!(tail.keep_len, intact);
    }

    #[test]
    fn complete_damaged_lines_at_the_end_are_damage_not_a_torn_tail() {
        // A file whose every line went through a CRLF conversion: each line is complete (it
        // ends in a newline) and contains no NUL, so no crash could have torn it; all of it
        // was acknowledged. The reader must refuse it, not report the whole file as torn
        // (the journal and spool then cut it to zero bytes).
        let (_dir, path) = scratch("crlf");
        let crlf = file_of(&["1", "2", "3"]).replace('\n', "\r\n");
        std::fs::write(&path, &crlf).unwrap();
        assert!(
            matches!(records(&path), Err(LogError::Damaged { offset: 0, .. })),
            "{:?}",
            records(&path)
        );
        // One digit flipped in the last, complete line: damage after acknowledgement too.
        let (_dir, path) = scratch("last");
        let text = file_of(&["1", "22"]).replacen("22", "23", 1);
        std::fs::write(&path, &text).unwrap();
        let offset = encode("1").len() as u64;
        assert!(
            matches!(records(&path), Err(LogError::Damaged { offset: at, .. }) if at == offset),
            "{:?}",
            records(&path)
        );
    }

    #[test]
    fn a_damaged_middle_line_stops_the_read_naming_its_offset() {
        let (_dir, path) = scratch("middle");
        let text = file_of(&["1", "22", "3"]);
        let offset = encode("1").len();
        let damaged = text.replacen("22", "23", 1);
        std::fs::write(&path, &damaged).unwrap();
        match records(&path) {
            Err(LogError::Damaged {
                offset: at, len, ..
            }) => {
                assert_eq!(at, offset as u64);
                assert_eq!(len, encode("22").len() as u64);
            }
            other => panic!("expected Damaged, got {other:?}"),
        }
        let message = records(&path).unwrap_err().to_string();
        assert!(message.contains(&format!("byte {offset}")), "{message}");
        assert!(message.contains("statusads quarantine"), "{message}");
    }

    #[test]
    fn quarantine_keeps_every_intact_record_and_moves_the_damage_aside() {
        let (_dir, path) = scratch("quarantine");
        let text = file_of(&["1", "22", "3", "44", "5"])
            .replacen("22", "2x", 1)
            .replacen("44", "4x", 1);
        std::fs::write(&path, &text).unwrap();
        let done = quarantine(&path).unwrap();
        assert_eq!(done.kept_records, 3);
        assert_eq!(done.moved.len(), 2);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            file_of(&["1", "3", "5"])
        );
        let aside = std::fs::read_to_string(&done.quarantine_file).unwrap();
        assert!(aside.contains("2x") && aside.contains("4x"), "{aside}");
        let (seen, tail) = records(&path).unwrap();
        assert_eq!(seen, ["1", "3", "5"]);
        assert_eq!(tail.torn_bytes, 0);
    }

    #[test]
    fn an_unreadable_intact_record_stops_the_read() {
        let (_dir, path) = scratch("unreadable");
        std::fs::write(&path, file_of(&["1", "2"])).unwrap();
        let err = read(&path, |json| {
            if json == "2" {
                Err("no".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(
            matches!(err, LogError::Unreadable { offset, .. } if offset == encode("1").len() as u64)
        );
    }
}
