//! A Redis inside the process: the commands the store sends, over memory, and its Lua scripts
//! run by the same Lua 5.1 that Redis embeds (`mlua`, vendored). [`RedisStore`](super::RedisStore)
//! talks to it through the connection type it uses for a real server, so every rule of the
//! store, in Rust or in Lua, is the one code that production runs: the contract suite runs on
//! it as a third backend.
//!
//! It keeps nothing across a stop and has no AOF (its `INFO` says so, which the service warns
//! about at start): it is for tests and development, the step before the embedded backend's
//! journal is written from these commands (issue 18).
//!
//! ## Layout
//!
//! - [`keyspace`]: the data and the plain commands, on a clock passed in.
//! - [`scripting`]: `SCRIPT LOAD`, `EVAL` and `EVALSHA`, with `redis.call` reaching the
//!   keyspace, under Redis's conversion rules between replies and Lua values.
//! - this module: one engine behind one lock (a script runs alone, as on Redis), serving
//!   `redis::aio::ConnectionLike` for single commands and pipelines.

mod keyspace;
mod scripting;

use std::sync::Arc;

use parking_lot::Mutex;
use redis::{ErrorKind, RedisError, RedisResult, Value};

use self::keyspace::{CommandError, Keyspace};
use self::scripting::Scripting;
use crate::clock::{Millis, SharedClock};

/// The `redis_url` that selects it (see `RedisStore::connect`).
pub const URL: &str = "in-process://";

/// What `INFO` answers: no AOF, never evicting.
const INFO: &str = "# Persistence\r\naof_enabled:0\r\naof_rewrite_in_progress:0\r\n\
                    # Memory\r\nmaxmemory_policy:noeviction\r\n";

struct Engine {
    keyspace: Keyspace,
    scripting: Scripting,
}

/// The shared engine; cloned into each connection the store holds.
#[derive(Clone)]
pub struct InProcessRedis {
    engine: Arc<Mutex<Engine>>,
    clock: SharedClock,
}

impl InProcessRedis {
    /// An empty keyspace whose TTLs run on `clock` (Redis's own clock: the system's, in the
    /// service; scripts are given the service's `now` as they are on Redis).
    pub fn new(clock: SharedClock) -> Result<Self, mlua::Error> {
        Ok(Self {
            engine: Arc::new(Mutex::new(Engine {
                keyspace: Keyspace::default(),
                scripting: Scripting::new()?,
            })),
            clock,
        })
    }

    /// Runs one command as Redis would answer it.
    pub fn execute(&self, args: &[&[u8]]) -> RedisResult<Value> {
        let now_ms = self.clock.now_ms();
        self.engine.lock().execute(args, now_ms)
    }

    /// Drops every expired key (lazy expiry drops the ones read).
    pub fn purge_expired(&self) {
        let now_ms = self.clock.now_ms();
        self.engine.lock().keyspace.purge_expired(now_ms);
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
            b"INFO" => Ok(Value::BulkString(INFO.as_bytes().to_vec())),
            b"TIME" => Ok(time(now_ms)),
            _ => self.keyspace.execute(args, now_ms),
        };
        reply.map_err(refusal)
    }

    fn execute_cmd(&mut self, cmd: &redis::Cmd, now_ms: Millis) -> RedisResult<Value> {
        let args: Vec<&[u8]> = cmd
            .args_iter()
            .map(|arg| match arg {
                redis::Arg::Simple(raw) => raw,
                redis::Arg::Cursor => b"0".as_slice(),
            })
            .collect();
        self.execute(&args, now_ms)
    }
}

/// `TIME`: seconds and microseconds, as bulk strings.
fn time(now_ms: Millis) -> Value {
    Value::Array(vec![
        Value::BulkString(now_ms.div_euclid(1000).to_string().into_bytes()),
        Value::BulkString((now_ms.rem_euclid(1000) * 1000).to_string().into_bytes()),
    ])
}

/// A refused command as the client reports Redis's error reply (`NOSCRIPT` is what
/// `LuaScript::run` answers by loading the script).
fn refusal(error: CommandError) -> RedisError {
    let kind = match error.code {
        "NOSCRIPT" => ErrorKind::NoScriptError,
        _ => ErrorKind::ResponseError,
    };
    RedisError::from((kind, error.code, error.message))
}

impl redis::aio::ConnectionLike for InProcessRedis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        let now_ms = self.clock.now_ms();
        let reply = self.engine.lock().execute_cmd(cmd, now_ms);
        Box::pin(std::future::ready(reply))
    }

    /// Every command of the pipeline in order, under one lock (so atomic, as `MULTI` is),
    /// answering `count` replies from `offset` as a connection does; the first refusal fails
    /// the whole call, after the commands before it ran (as Redis runs them).
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        let now_ms = self.clock.now_ms();
        let mut engine = self.engine.lock();
        // `Pipeline` keeps whether it is atomic to itself; its encoding begins with MULTI then.
        let atomic = pipeline
            .get_packed_pipeline()
            .starts_with(b"*1\r\n$5\r\nMULTI\r\n");
        let mut replies = Vec::new();
        if atomic {
            replies.push(Value::Okay);
        }
        let mut results = Vec::new();
        for cmd in pipeline.cmd_iter() {
            match engine.execute_cmd(cmd, now_ms) {
                Ok(value) if atomic => {
                    replies.push(Value::SimpleString("QUEUED".into()));
                    results.push(value);
                }
                Ok(value) => replies.push(value),
                Err(err) => return Box::pin(std::future::ready(Err(err))),
            }
        }
        if atomic {
            replies.push(Value::Array(results));
        }
        let answered = replies.into_iter().skip(offset).take(count).collect();
        Box::pin(std::future::ready(Ok(answered)))
    }

    fn get_db(&self) -> i64 {
        0
    }
}
