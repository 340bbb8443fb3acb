//! Creative media, content-addressed under `<data_dir>/assets/<sha256>`: the same bytes are
//! stored once, a path can never be overwritten with other content, and the URL is cacheable
//! forever. Files are written to a temporary name and renamed, so a crash never leaves a
//! half-written asset under its final name.

use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

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
    pub async fn put(&self, bytes: &[u8]) -> io::Result<String> {
        let sha = Self::digest(bytes);
        let path = self.dir.join(&sha);
        if tokio::fs::try_exists(&path).await? {
            return Ok(sha);
        }
        let tmp = self.dir.join(format!(".{sha}.{}.tmp", std::process::id()));
        tokio::fs::write(&tmp, bytes).await?;
        tokio::fs::rename(&tmp, &path).await?;
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
