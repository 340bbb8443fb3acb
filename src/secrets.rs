//! Secrets a data dir keeps because configuration left them empty: the operator and client
//! tokens, the slot-token signing key and the demo advertiser's key. Each is created on first
//! use in its own file under `data_dir`, readable by the owner only (created so, never widened
//! later), and read back at every start, so tokens handed out keep working across restarts.
//! A node's id (`record::outages`) is no secret but is kept the same way.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A secret and the file that keeps it.
#[derive(Debug, Clone)]
pub struct Kept {
    pub value: String,
    pub path: PathBuf,
    /// True when this start created it.
    pub created: bool,
}

/// The secret kept in `data_dir/<name>`, created as `<prefix><32 random characters>` when the
/// file is missing or holds less than `min_len` characters.
pub fn kept(data_dir: &Path, name: &str, prefix: &str, min_len: usize) -> std::io::Result<Kept> {
    if let Some(existing) = read(data_dir, name).filter(|k| k.value.len() >= min_len) {
        return Ok(existing);
    }
    let path = data_dir.join(name);
    let value = random(prefix);
    write(&path, &value)?;
    Ok(Kept {
        value,
        path,
        created: true,
    })
}

/// Keeps `value` in `data_dir/<name>` (replacing what was there).
pub fn keep(data_dir: &Path, name: &str, value: &str) -> std::io::Result<PathBuf> {
    let path = data_dir.join(name);
    write(&path, value)?;
    Ok(path)
}

/// What `data_dir/<name>` keeps, if anything.
pub fn read(data_dir: &Path, name: &str) -> Option<Kept> {
    let path = data_dir.join(name);
    let value = std::fs::read_to_string(&path).ok()?.trim().to_owned();
    (!value.is_empty()).then_some(Kept {
        value,
        path,
        created: false,
    })
}

/// `prefix` and 32 random alphanumeric characters (190 bits).
pub fn random(prefix: &str) -> String {
    use rand::distributions::{Alphanumeric, DistString};
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
    )
}

fn write(path: &Path, value: &str) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(value.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_secret_is_the_same_at_every_start_and_private() {
        let dir =
            std::env::temp_dir().join(format!("statusads-secrets-{:x}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = kept(&dir, "admin_token", "sa_admin_", 16).unwrap();
        assert!(first.created && first.value.starts_with("sa_admin_"));
        let again = kept(&dir, "admin_token", "sa_admin_", 16).unwrap();
        assert!(!again.created);
        assert_eq!(again.value, first.value);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&first.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&first.path, "short").unwrap();
        assert!(kept(&dir, "admin_token", "sa_admin_", 16).unwrap().created);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
