//! Creative media, content-addressed by SHA-256: the same bytes are stored once, an address can
//! never be overwritten with other content, and the URL is cacheable forever. The bytes live in
//! the system of record, so every node serves every asset whichever node took the upload;
//! `<data_dir>/assets/<sha256>` is this node's cache of them (written to a temporary name and
//! renamed, so a crash never leaves a half-written file under its final name; best effort:
//! without it assets are read from the record).
//!
//! A record write that fails (a full disk, a database outage) is the store being unavailable:
//! the upload may be retried and nothing of it stays behind.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::record::Record;
use crate::store::StoreError;

#[derive(Clone)]
pub struct AssetStore {
    cache: PathBuf,
    record: Arc<Record>,
}

impl AssetStore {
    pub fn open(data_dir: &Path, record: Arc<Record>) -> io::Result<Self> {
        let cache = data_dir.join("assets");
        std::fs::create_dir_all(&cache)?;
        Ok(Self { cache, record })
    }

    pub fn digest(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// Stores validated bytes in the record; returns their SHA-256.
    pub async fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let sha = Self::digest(bytes);
        self.record.put_asset(&sha, bytes).await?;
        self.cache_write(&sha, bytes).await;
        Ok(sha)
    }

    /// The bytes of an asset; `None` for anything that is not a stored SHA-256.
    pub async fn get(&self, sha: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Ok(None);
        }
        if let Ok(bytes) = tokio::fs::read(self.cache.join(sha)).await {
            // A cached file is used only if it still is what its name says.
            if Self::digest(&bytes) == sha {
                return Ok(Some(bytes));
            }
        }
        let bytes = self.record.asset(sha).await?;
        if let Some(bytes) = &bytes {
            self.cache_write(sha, bytes).await;
        }
        Ok(bytes)
    }

    /// Number of stored assets (tests use it to prove rejected uploads store nothing).
    pub async fn count(&self) -> Result<u64, StoreError> {
        self.record.asset_count().await
    }

    async fn cache_write(&self, sha: &str, bytes: &[u8]) {
        let path = self.cache.join(sha);
        if tokio::fs::try_exists(&path).await.unwrap_or(false) {
            return;
        }
        let tmp = self
            .cache
            .join(format!(".{sha}.{}.tmp", std::process::id()));
        let written = match tokio::fs::write(&tmp, bytes).await {
            Ok(()) => tokio::fs::rename(&tmp, &path).await,
            Err(err) => Err(err),
        };
        if let Err(err) = written {
            let _ = tokio::fs::remove_file(&tmp).await;
            tracing::debug!(error = %err, "asset not cached on local disk");
        }
    }
}
