//! Whether this node can make writes durable: what `/readyz` asks besides "does the store
//! answer". A full or read-only disk under `data_dir` fails events (spool, journal) and uploads
//! alike, so readiness reports it before a client finds out.

use std::io::Write;
use std::path::Path;

/// Bytes the probe writes: one page, about what a journal or spool append needs.
const PROBE_BYTES: usize = 4096;

/// Writes, fsyncs and removes a small file in `dir`.
pub fn probe(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(".durability-probe");
    let result = std::fs::File::create(&path).and_then(|mut file| {
        file.write_all(&[0u8; PROBE_BYTES])?;
        file.sync_data()
    });
    let _ = std::fs::remove_file(&path);
    result
}
