//! The record's schema: the SQL files under `migrations/<database>/`, compiled into the binary
//! and applied at open by sqlx's own migrator (its table, checksums, locking and ordering).
//!
//! The files are listed here by name instead of through `sqlx::migrate!`: that macro was the
//! only use of sqlx's `macros` feature, which builds a second copy of sqlx and both drivers for
//! the compiler (about a sixth of a clean build's CPU). A unit test resolves each directory
//! with sqlx's own reader and holds this list to it, so a new file cannot be left out and
//! every version, description and checksum is what the macro would have recorded.

use std::borrow::Cow;

use futures_util::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{MigrateError, Migration, MigrationSource, MigrationType, Migrator};

use super::Database;

/// `(file name, contents)` of one migration, read at compile time.
macro_rules! migration_file {
    ($database:literal, $name:literal) => {
        (
            $name,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/migrations/",
                $database,
                "/",
                $name
            )),
        )
    };
}

const POSTGRES: &[(&str, &str)] = &[
    migration_file!("postgres", "0001_catalog.sql"),
    migration_file!("postgres", "0002_ledger.sql"),
    migration_file!("postgres", "0003_user_key.sql"),
    migration_file!("postgres", "0004_insight.sql"),
    migration_file!("postgres", "0005_conversion_clicks.sql"),
    migration_file!("postgres", "0006_conversion_index.sql"),
    migration_file!("postgres", "0007_outage_spools.sql"),
];

const SQLITE: &[(&str, &str)] = &[
    migration_file!("sqlite", "0001_catalog.sql"),
    migration_file!("sqlite", "0002_ledger.sql"),
    migration_file!("sqlite", "0003_user_key.sql"),
    migration_file!("sqlite", "0004_insight.sql"),
    migration_file!("sqlite", "0005_conversion_clicks.sql"),
    migration_file!("sqlite", "0006_conversion_index.sql"),
    migration_file!("sqlite", "0007_outage_spools.sql"),
];

/// The migrator of `database`'s schema.
pub(super) async fn migrator(database: Database) -> Result<Migrator, MigrateError> {
    let mut migrator = Migrator::new(Files(files(database))).await?;
    // A record a later build has migrated further (a rolling deploy, a rollback) is no reason
    // to stop: each migration only adds what this build can ignore.
    migrator.set_ignore_missing(true);
    Ok(migrator)
}

fn files(database: Database) -> &'static [(&'static str, &'static str)] {
    match database {
        Database::Postgres => POSTGRES,
        Database::Sqlite => SQLITE,
    }
}

/// A list of compiled-in files as a source of migrations.
#[derive(Debug)]
struct Files(&'static [(&'static str, &'static str)]);

impl MigrationSource<'static> for Files {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            self.0
                .iter()
                .map(|&(name, sql)| migration(name, sql))
                .collect()
        })
    }
}

/// The migration of file `name` (`<version>_<description>.sql`), read as sqlx reads a
/// directory: underscores of the description become spaces, and a file that begins with
/// `-- no-transaction` runs outside a transaction.
fn migration(name: &'static str, sql: &'static str) -> Result<Migration, BoxDynError> {
    let (version, rest) = name
        .split_once('_')
        .ok_or_else(|| format!("migration {name:?} is not named <version>_<description>.sql"))?;
    let version: i64 = version
        .parse()
        .map_err(|_| format!("migration {name:?} does not begin with a version number"))?;
    let description = rest
        .strip_suffix(".sql")
        .ok_or_else(|| format!("migration {name:?} is not a .sql file"))?
        .replace('_', " ");
    Ok(Migration::new(
        version,
        Cow::Owned(description),
        MigrationType::Simple,
        Cow::Borrowed(sql),
        sql.starts_with("-- no-transaction"),
    ))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn the_compiled_in_list_is_each_directory_as_sqlx_reads_it() {
        for (database, dir) in [
            (Database::Postgres, "postgres"),
            (Database::Sqlite, "sqlite"),
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(dir);
            let mut on_disk: Vec<Migration> = sqlx::migrate::resolve_blocking(&path)
                .unwrap()
                .into_iter()
                .map(|(migration, _)| migration)
                .collect();
            on_disk.sort_by_key(|m| m.version);
            let listed: Vec<Migration> = files(database)
                .iter()
                .map(|&(name, sql)| migration(name, sql).unwrap())
                .collect();
            let shape = |m: &Migration| {
                (
                    m.version,
                    m.description.to_string(),
                    m.checksum.to_vec(),
                    m.no_tx,
                    m.migration_type,
                )
            };
            assert_eq!(
                listed.iter().map(shape).collect::<Vec<_>>(),
                on_disk.iter().map(shape).collect::<Vec<_>>(),
                "migrations/{dir}: list every file in src/record/schema.rs, in order"
            );
        }
    }

    #[test]
    fn a_misnamed_file_is_refused_with_its_name() {
        for name in ["catalog.sql", "x_catalog.sql", "0005_catalog.txt"] {
            let err = migration(name, "SELECT 1").unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }
}
