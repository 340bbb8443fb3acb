//! What every API test needs: a real store (a fresh `redis-server`, or the embedded backend in a
//! scratch directory), the application on port 0 with a manual clock, and an HTTP client.

pub mod app;
pub mod browser;
pub mod failing_fsync;
pub mod logs;
pub mod operations;
pub mod ports;
pub mod postgres;
pub mod process_group;
pub mod redis_cluster;
pub mod redis_server;
pub mod scratch;
pub mod service;
pub mod slow_client;
pub mod small_disk;
pub mod vanishing;

pub use app::{spawn_app, spawn_app_with, Backend, TestApp};

/// Runs one async behaviour test against every backend: the contract suite. The third runs the
/// Redis backend's code and scripts on the in-process Redis.
#[macro_export]
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod on_redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Redis).await
                }
            )*
        }
        mod on_embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Embedded).await
                }
            )*
        }
        mod on_in_process {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::InProcess).await
                }
            )*
        }
    };
}
