//! Creative media, content-addressed under `<data_dir>/assets/<sha256>`: the same bytes are
//! stored once, a path can never be overwritten with other content, and the URL is cacheable
//! forever. Files are written to a temporary name and renamed, so a crash never leaves a
//! half-written asset under its final name.
//!
//! A write that fails (a full disk, a read-only or broken volume) is the store being
//! unavailable, as for the journal: the upload may be retried and nothing of it stays behind.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct AssetStore {
    dir: PathBuf,
}

impl AssetStore {
    pub fn open(data_dir: &Path) -> io::Result<Self> {
        let dir = data_dir.join("assets");
        std::fs::create_dir_all(&dir)?;
        Ok(Self { dir })
    }

    pub fn digest(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// Stores validated bytes; returns their SHA-256.
    pub async fn put(&self, bytes: &[u8]) -> Result<String, StoreError> {
        let sha = Self::digest(bytes);
        let path = self.dir.join(&sha);
        let unavailable =
            |err: io::Error| StoreError::Unavailable(format!("asset {sha} not stored: {err}"));
        if tokio::fs::try_exists(&path).await.map_err(unavailable)? {
            return Ok(sha);
        }
        let tmp = self.dir.join(format!(".{sha}.{}.tmp", std::process::id()));
        let written = match tokio::fs::write(&tmp, bytes).await {
            Ok(()) => tokio::fs::rename(&tmp, &path).await,
            Err(err) => Err(err),
        };
        if let Err(err) = written {
            // The partial file would hold the very space that ran out.
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(unavailable(err));
        }
        Ok(sha)
    }

    /// The bytes of an asset; `None` for anything that is not a stored SHA-256.
    pub async fn get(&self, sha: &str) -> io::Result<Option<Vec<u8>>> {
        if sha.len() != 64 || !sha.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Ok(None);
        }
        match tokio::fs::read(self.dir.join(sha)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// Number of stored assets (tests use it to prove rejected uploads store nothing).
    pub fn count(&self) -> io::Result<usize> {
        Ok(std::fs::read_dir(&self.dir)?.filter_map(Result::ok).count())
    }
}
