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
    /// Appends one command's writes (in the order they ran; called under the engine lock, so
    /// lines follow the order commands ran). Answers the line's number; on an error nothing
    /// was appended and the writes are taken back.
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
        Self::with(Keyspace::default(), clock, None)
    }

    /// `keyspace` (read back from a journal), every later write appended to `journal` and
    /// each reply given once the lines before it are on disk.
    pub fn durable(
        keyspace: Keyspace,
        clock: SharedClock,
        journal: Arc<dyn Journal>,
    ) -> Result<Self, mlua::Error> {
        Self::with(keyspace, clock, Some(journal))
    }

    fn with(
        keyspace: Keyspace,
        clock: SharedClock,
        journal: Option<Arc<dyn Journal>>,
    ) -> Result<Self, mlua::Error> {
        Ok(Self {
            engine: Arc::new(Mutex::new(Engine {
                keyspace,
                scripting: Scripting::new()?,
            })),
            clock,
            journal,
        })
    }

    /// Drops every expired key (lazy expiry drops the ones read).
    pub fn purge_expired(&self) {
        let now_ms = self.clock.now_ms();
        self.engine.lock().keyspace.purge_expired(now_ms);
    }

    /// Runs `f` on the keyspace with no command running meanwhile (a snapshot).
    pub fn locked<R>(&self, f: impl FnOnce(&mut Keyspace, Millis) -> R) -> R {
        let now_ms = self.clock.now_ms();
        f(&mut self.engine.lock().keyspace, now_ms)
    }

    /// Runs `cmds` in order under one lock, as Redis runs a pipeline, then waits (without the
    /// lock) until every line they depend on is on disk: a reply never shows what a restart
    /// would not bring back.
    fn call<'a>(
        &self,
        cmds: impl Iterator<Item = &'a redis::Cmd>,
    ) -> futures_util::future::BoxFuture<'static, Vec<RedisResult<Value>>> {
        let now_ms = self.clock.now_ms();
        let (replies, line) = {
            let mut engine = self.engine.lock();
            let replies: Vec<_> = cmds
                .map(|cmd| engine.execute_cmd(cmd, now_ms, self.journal.as_deref()))
                .collect();
            (replies, self.journal.as_ref().map(|j| j.appended()))
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
                    Err(err) => {
                        let (kind, text) = (err.kind(), err.to_string());
                        let failed = || RedisError::from(std::io::Error::new(kind, text.clone()));
                        replies.iter().map(|_| Err(failed())).collect()
                    }
                },
                None => replies,
            }
        })
    }
}

impl Engine {
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

    /// One command, its writes appended to `journal` (taken back if they cannot be).
    fn execute_cmd(
        &mut self,
        cmd: &redis::Cmd,
        now_ms: Millis,
        journal: Option<&dyn Journal>,
    ) -> RedisResult<Value> {
        let args: Vec<&[u8]> = cmd
            .args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(raw) => raw,
                redis::Arg::Cursor => b"0".as_slice(),
            })
            .collect();
        let Some(journal) = journal else {
            return self.execute(&args, now_ms);
        };
        if let Some(why) = journal.refusal() {
            return Err(RedisError::from(std::io::Error::other(why)));
        }
        self.keyspace.begin();
        let reply = self.execute(&args, now_ms);
        let recording = self.keyspace.finish();
        if recording.writes.is_empty() {
            return reply;
        }
        match journal.append(now_ms, &recording.writes) {
            Ok(_) => reply,
            Err(err) => {
                self.keyspace.rollback(recording);
                Err(RedisError::from(err))
            }
        }
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
