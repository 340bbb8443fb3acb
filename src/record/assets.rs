//! Creative asset bytes, keyed by their SHA-256. Stored once: a second upload of the same bytes
//! changes nothing.

use super::{unavailable, Record};
use crate::store::StoreError;

impl Record {
    pub async fn put_asset(&self, sha256: &str, bytes: &[u8]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO assets (sha256, bytes) VALUES ($1, $2) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(sha256)
        .bind(bytes.to_vec())
        .execute(&self.pool)
        .await
        .map(drop)
        .map_err(unavailable)
    }

    pub async fn asset(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT bytes FROM assets WHERE sha256 = $1")
            .bind(sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)
    }

    pub async fn asset_count(&self) -> Result<u64, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM assets")
            .fetch_one(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(count as u64)
    }
}
