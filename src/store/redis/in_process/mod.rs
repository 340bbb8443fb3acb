//! A Redis inside the process: the commands the store sends, over memory, and its Lua scripts
//! run by the same Lua 5.1 that Redis embeds (`mlua`, vendored). [`RedisStore`](super::RedisStore)
//! talks to it through the connection type it uses for a real server, so every rule of the
//! store, in Rust or in Lua, is the one code that production runs: the contract suite runs on
//! it as a third backend.
//!
//! It keeps nothing across a stop and has no AOF (its `INFO` says so, which the service warns
//! about at start): it is for tests and development. Its TTLs run on the service's clock, as
//! the scripts' `now` does, so a test's clock moves both.
//!
//! ## Layout
//!
//! - [`keyspace`]: the data and the plain commands, on a clock passed in.
//! - [`scripting`]: `SCRIPT LOAD`, `EVAL` and `EVALSHA`, with `redis.call` reaching the
//!   keyspace, under Redis's conversion rules between replies and Lua values.
//! - this module: one engine behind one lock (a script runs alone, as on Redis), serving
//!   `redis::aio::ConnectionLike` for single commands and pipelines.

pub mod keyspace;
mod scripting;

use std::sync::Arc;

use parking_lot::Mutex;
use redis::{ErrorKind, RedisError, RedisResult, Value};

use self::keyspace::{CommandError, Keyspace};
use self::scripting::Scripting;
use crate::clock::{Millis, SharedClock};

/// The `redis_url` that selects it (see `RedisStore::connect`).
pub const URL: &str = "in-process://";

/// Where a durable in-process Redis keeps what changed: the embedded backend's journal
/// (`store::embedded`). Without one, nothing survives a stop.
pub trait Journal: Send + Sync + 'static {
    /// Appends one call's writes (a command or a pipeline, in the order they ran; called under
    /// the engine lock, so lines follow the order calls ran). Answers the line's number; on
    /// an error nothing was appended and the writes are taken back.
    fn append(&self, now_ms: Millis, writes: &[Vec<Vec<u8>>]) -> std::io::Result<u64>;
    /// The number of the last line appended.
    fn appended(&self) -> u64;
    /// Waits until every line up to `line` is on disk.
    fn durable(
        self: Arc<Self>,
        line: u64,
    ) -> futures_util::future::BoxFuture<'static, std::io::Result<()>>;
    /// Why nothing may be answered any more (memory ahead of a disk that failed), if so.
    fn refusal(&self) -> Option<&'static str>;
}

struct Engine {
    keyspace: Keyspace,
    scripting: Scripting,
    /// The latest instant a command ran at: the keyspace's clock never goes back, so that
    /// what expired at one instant is expired at every later command (as a journal runs them
    /// again).
    now_ms: Millis,
}

/// The shared engine; cloned into each connection the store holds.
#[derive(Clone)]
pub struct InProcessRedis {
    engine: Arc<Mutex<Engine>>,
    clock: SharedClock,
    journal: Option<Arc<dyn Journal>>,
}

impl InProcessRedis {
    /// An empty keyspace whose TTLs run on `clock`, kept in memory only.
    pub fn new(clock: SharedClock) -> Result<Self, mlua::Error> {
        Self::with(Keyspace::default(), Millis::MIN, clock, None)
    }

    /// `keyspace` (read back from a journal whose latest line ran at `now_ms`), every later
    /// write appended to `journal` and each reply given once the lines before it are on disk.
    pub fn durable(
        keyspace: Keyspace,
        now_ms: Millis,
        clock: SharedClock,
        journal: Arc<dyn Journal>,
    ) -> Result<Self, mlua::Error> {
        Self::with(keyspace, now_ms, clock, Some(journal))
    }

    fn with(
        keyspace: Keyspace,
        now_ms: Millis,
        clock: SharedClock,
        journal: Option<Arc<dyn Journal>>,
    ) -> Result<Self, mlua::Error> {
        Ok(Self {
            engine: Arc::new(Mutex::new(Engine {
                keyspace,
                scripting: Scripting::new()?,
                now_ms,
            })),
            clock,
            journal,
        })
    }

    /// Drops every expired key (lazy expiry drops the ones read).
    pub fn purge_expired(&self) {
        self.locked(|keyspace, now_ms| keyspace.purge_expired(now_ms));
    }

    /// Runs `f` on the keyspace, at the keyspace's now, with no command running meanwhile (a
    /// snapshot).
    pub fn locked<R>(&self, f: impl FnOnce(&mut Keyspace, Millis) -> R) -> R {
        let mut engine = self.engine.lock();
        let now_ms = engine.advance(self.clock.now_ms());
        f(&mut engine.keyspace, now_ms)
    }

    /// Runs `cmds` in order under one lock, as Redis runs a pipeline, their writes appended
    /// as one journal line (all taken back if it cannot be), then waits (without the lock)
    /// until every line they depend on is on disk: a reply never shows what a restart would
    /// not bring back.
    fn call<'a>(
        &self,
        cmds: impl Iterator<Item = &'a redis::Cmd>,
    ) -> futures_util::future::BoxFuture<'static, Vec<RedisResult<Value>>> {
        let cmds: Vec<Vec<&[u8]>> = cmds.map(arguments).collect();
        // Readiness asks with PING: answered at once, whatever the journal is waiting for.
        let pings = cmds.iter().all(|args| {
            args.first()
                .is_some_and(|n| n.eq_ignore_ascii_case(b"PING"))
        });
        let (replies, line) = {
            let mut engine = self.engine.lock();
            let now_ms = engine.advance(self.clock.now_ms());
            match &self.journal {
                None => {
                    let replies = cmds.iter().map(|args| engine.execute(args, now_ms));
                    (replies.collect(), None)
                }
                Some(journal) => match engine.journaled(journal.as_ref(), &cmds, now_ms, pings) {
                    Ok(replies) => (replies, (!pings).then(|| journal.appended())),
                    Err(err) => return failed(cmds.len(), err),
                },
            }
        };
        let waited = self
            .journal
            .clone()
            .zip(line)
            .map(|(j, line)| j.durable(line));
        Box::pin(async move {
            match waited {
                Some(durable) => match durable.await {
                    Ok(()) => replies,
                    // Never acknowledged: the lines were cut back (see `Journal::refusal`).
                    Err(err) => failed(replies.len(), err).await,
                },
                None => replies,
            }
        })
    }
}

/// `count` replies of the same failure.
fn failed(
    count: usize,
    err: std::io::Error,
) -> futures_util::future::BoxFuture<'static, Vec<RedisResult<Value>>> {
    let (kind, text) = (err.kind(), err.to_string());
    let replies = (0..count)
        .map(|_| Err(RedisError::from(std::io::Error::new(kind, text.clone()))))
        .collect();
    Box::pin(std::future::ready(replies))
}

fn arguments(cmd: &redis::Cmd) -> Vec<&[u8]> {
    cmd.args_iter()
        .map(|arg| match arg {
            redis::Arg::Simple(raw) => raw,
            redis::Arg::Cursor => b"0".as_slice(),
        })
        .collect()
}

impl Engine {
    /// The keyspace's now at a command that reads `clock_ms` (see `now_ms`).
    fn advance(&mut self, clock_ms: Millis) -> Millis {
        self.now_ms = self.now_ms.max(clock_ms);
        self.now_ms
    }

    fn execute(&mut self, args: &[&[u8]], now_ms: Millis) -> RedisResult<Value> {
        let name = args
            .first()
            .map(|n| n.to_ascii_uppercase())
            .unwrap_or_default();
        let reply = match name.as_slice() {
            b"EVAL" | b"EVALSHA" | b"SCRIPT" => {
                self.scripting.execute(&mut self.keyspace, args, now_ms)
            }
            _ => self.keyspace.execute(args, now_ms),
        };
        reply.map_err(refusal)
    }

    /// Runs `cmds` with their writes recorded, then appends those as one line to `journal`;
    /// if it cannot take them, they are taken back and the call fails whole. A journal that
    /// refuses everything (see `Journal::refusal`) still answers `pings`: readiness then names
    /// the journal, not an unreachable store.
    fn journaled(
        &mut self,
        journal: &dyn Journal,
        cmds: &[Vec<&[u8]>],
        now_ms: Millis,
        pings: bool,
    ) -> std::io::Result<Vec<RedisResult<Value>>> {
        if let Some(why) = journal.refusal().filter(|_| !pings) {
            return Err(std::io::Error::other(why));
        }
        self.keyspace.begin();
        let replies = cmds.iter().map(|args| self.execute(args, now_ms)).collect();
        let recording = self.keyspace.finish();
        if !recording.writes.is_empty() {
            if let Err(err) = journal.append(now_ms, &recording.writes) {
                self.keyspace.rollback(recording);
                return Err(err);
            }
        }
        Ok(replies)
    }
}

/// A refused command as the client reports Redis's error reply (`NOSCRIPT` is what
/// `LuaScript::run` answers by loading the script). The client keeps the code of a server's
/// other errors (`WRONGTYPE`) in a form only it can make: here they are `ERR`, which the store
/// classifies alike (as broken, not away; this Redis is never away and never out of memory).
fn refusal(error: CommandError) -> RedisError {
    let kind = match error.code {
        "NOSCRIPT" => ErrorKind::NoScriptError,
        _ => ErrorKind::ResponseError,
    };
    RedisError::from((kind, error.code, error.message))
}

impl redis::aio::ConnectionLike for InProcessRedis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        let replies = self.call(std::iter::once(cmd));
        Box::pin(async move { replies.await.pop().unwrap_or(Ok(Value::Nil)) })
    }

    /// Every command of the pipeline, as [`InProcessRedis::call`] runs them; the first refusal
    /// fails the call, as the client reports it, after the rest have run. The store sends no
    /// `MULTI` (the client asks for replies past the first, `offset`, only then).
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        if offset != 0 {
            let refused =
                RedisError::from((ErrorKind::ClientError, "the in-process Redis runs no MULTI"));
            return Box::pin(std::future::ready(Err(refused)));
        }
        let replies = self.call(pipeline.cmd_iter());
        Box::pin(async move {
            let replies: RedisResult<Vec<Value>> = replies.await.into_iter().collect();
            replies.map(|all| all.into_iter().take(count).collect())
        })
    }

    fn get_db(&self) -> i64 {
        0
    }
}
