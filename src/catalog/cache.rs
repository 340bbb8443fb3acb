//! The catalog's local copy, `data_dir/catalog.cache`: what a node starts from when Redis is
//! unreachable at start, so that it can still verify and spool the events of ads it served
//! before (an event needs its campaign's caps to become an event write) and answer empty slots.
//! It is never read while Redis answers: the store is the catalog's source of truth, and the
//! refresher brings a cached catalog up to date from the version it records as soon as Redis
//! is back.
//!
//! # Layout
//!
//! One header line, then the catalog as JSON:
//!
//! ```text
//! statusads-catalog-cache 1 <SHA-256 of the JSON, hex>
//! {"version": 42, "advertisers": [...], "campaigns": [...], "creatives": [...]}
//! ```
//!
//! Written whenever the loaded catalog's version changes (at most once per refresh tick, off
//! the request path) and at shutdown: to a temporary file, fsynced, renamed over the old one
//! and the directory fsynced, so a crash leaves the old copy or the new one, never a mix (nodes
//! sharing a `data_dir` each write their own temporary file; the last rename wins). A
//! copy that fails its checksum is ignored (the node then starts as one that never loaded a
//! catalog). Readable by the owner only: it holds advertisers' key hashes, as Redis does.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::store::CatalogData;

const FILE: &str = "catalog.cache";
const MAGIC: &str = "statusads-catalog-cache 1";

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot read the catalog cache: {0}")]
    Io(#[from] std::io::Error),
    #[error("the catalog cache is damaged: {0}")]
    Damaged(&'static str),
}

/// The file's bytes for a catalog.
pub fn encode(data: &CatalogData) -> Vec<u8> {
    let json = serde_json::to_vec(data).expect("catalog records serialise");
    let mut out = format!("{MAGIC} {}\n", hex::encode(Sha256::digest(&json))).into_bytes();
    out.extend_from_slice(&json);
    out
}

/// The catalog in a file's bytes, if they are whole and intact.
pub fn decode(bytes: &[u8]) -> Result<CatalogData, CacheError> {
    let newline = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or(CacheError::Damaged("no header"))?;
    let (header, json) = (&bytes[..newline], &bytes[newline + 1..]);
    let header = std::str::from_utf8(header).map_err(|_| CacheError::Damaged("header"))?;
    let sum = header
        .strip_prefix(MAGIC)
        .and_then(|rest| rest.strip_prefix(' '))
        .ok_or(CacheError::Damaged("not a catalog cache of this version"))?;
    if hex::encode(Sha256::digest(json)) != sum {
        return Err(CacheError::Damaged("checksum mismatch"));
    }
    serde_json::from_slice(json).map_err(|_| CacheError::Damaged("unreadable records"))
}

pub struct CatalogCache {
    path: PathBuf,
}

impl CatalogCache {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(FILE),
        }
    }

    /// The cached catalog; `None` when there is none.
    pub fn load(&self) -> Result<Option<CatalogData>, CacheError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => decode(&bytes).map(Some),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Replaces the cached catalog atomically (blocking: call it off the async workers).
    pub fn save(&self, data: &CatalogData) -> std::io::Result<()> {
        // Per process: nodes sharing a data_dir (for assets) never write into one temporary file.
        let temporary = self
            .path
            .with_extension(format!("cache.{}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary)?;
        file.write_all(&encode(data))?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temporary, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("statusads-cache-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_saved_catalog_loads_back_and_damage_is_detected() {
        let dir = scratch();
        let cache = CatalogCache::new(&dir);
        assert!(cache.load().unwrap().is_none(), "none yet");
        let data = CatalogData {
            version: 42,
            ..CatalogData::default()
        };
        cache.save(&data).unwrap();
        assert_eq!(cache.load().unwrap().unwrap().version, 42);
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary left"
        );

        let mut bytes = std::fs::read(dir.join(FILE)).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        assert!(matches!(decode(&bytes), Err(CacheError::Damaged(_))));
        assert!(matches!(
            decode(&bytes[..bytes.len() - 3]),
            Err(CacheError::Damaged("checksum mismatch"))
        ));
        assert!(matches!(decode(b"{}"), Err(CacheError::Damaged(_))));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
