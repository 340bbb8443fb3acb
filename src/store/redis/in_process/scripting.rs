//! `SCRIPT LOAD`, `EVAL` and `EVALSHA` over the keyspace, in one Lua 5.1 state as Redis keeps
//! one: each script compiled once (named by its SHA-1), `KEYS` and `ARGV` set as globals per
//! call, and `redis.call` / `redis.pcall` reaching the keyspace while the script runs.
//!
//! Values cross as Redis converts them (its "Conversion between Lua and Redis data types"):
//! a reply's integer is a Lua number, a bulk string a Lua string, a nil bulk `false`, an array
//! a table, a status `{ok = ...}` and an error raised (`redis.call`) or `{err = ...}`
//! (`redis.pcall`); back, a number is truncated to an integer, a table is an array up to its
//! first nil unless it holds `ok` or `err`, `true` is 1 and `false` nil. A write made before a
//! script fails stays, as on Redis (the scripts order their writes for it).
//!
//! The environment is Redis's as far as the store's scripts can tell: the base, `string`,
//! `table` and `math` libraries only, and globals that can be neither set nor read unset (a
//! script that forgets a `local` fails here as it would on Redis).

use std::cell::RefCell;
use std::collections::HashMap;

use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Table, Value as LuaValue};
use redis::Value;

use super::keyspace::{CommandError, Keyspace, Reply};
use crate::clock::Millis;

pub struct Scripting {
    lua: Lua,
    /// SHA-1 (hex, lower case) -> the compiled script.
    scripts: HashMap<String, Function>,
}

impl Scripting {
    pub fn new() -> mlua::Result<Self> {
        let lua = Lua::new_with(
            StdLib::STRING | StdLib::TABLE | StdLib::MATH,
            LuaOptions::new(),
        )?;
        lua.globals().set("redis", lua.create_table()?)?;
        lua.load(
            "setmetatable(_G, {
               __newindex = function(_, name)
                 error('Attempt to modify a readonly table: ' .. tostring(name), 2)
               end,
               __index = function(_, name)
                 error(\"Script attempted to access nonexistent global variable '\" .. tostring(name) .. \"'\", 2)
               end,
             })",
        )
        .set_name("globals protection")
        .exec()?;
        Ok(Self {
            lua,
            scripts: HashMap::new(),
        })
    }

    /// `SCRIPT LOAD code`, `EVAL code numkeys ...` or `EVALSHA sha numkeys ...`.
    pub fn execute(&mut self, keyspace: &mut Keyspace, args: &[&[u8]], now_ms: Millis) -> Reply {
        let wrong = || CommandError {
            code: "ERR",
            message: "wrong number of arguments for a scripting command".into(),
        };
        let name = args[0].to_ascii_uppercase();
        if name == b"SCRIPT" {
            return match args {
                [_, sub, code] if sub.eq_ignore_ascii_case(b"LOAD") => {
                    Ok(Value::BulkString(self.load(code)?.into_bytes()))
                }
                _ => Err(CommandError {
                    code: "ERR",
                    message: "the in-process Redis knows only SCRIPT LOAD".into(),
                }),
            };
        }
        let [_, script, numkeys, rest @ ..] = args else {
            return Err(wrong());
        };
        let sha = if name == b"EVAL" {
            self.load(script)?
        } else {
            String::from_utf8_lossy(script).to_ascii_lowercase()
        };
        let numkeys = std::str::from_utf8(numkeys)
            .ok()
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= rest.len())
            .ok_or_else(|| CommandError {
                code: "ERR",
                message: "Number of keys can't be greater than number of args".into(),
            })?;
        let function = self
            .scripts
            .get(&sha)
            .cloned()
            .ok_or_else(|| CommandError {
                code: "NOSCRIPT",
                message: "No matching script. Please use EVAL.".into(),
            })?;
        let (keys, argv) = rest.split_at(numkeys);
        let raised = RefCell::new(None);
        self.run(&function, keyspace, keys, argv, now_ms, &raised)
            .map_err(|e| match raised.take() {
                // A command the script called failed: its error, as Redis 7 reports it.
                Some(CommandError { code, message }) => CommandError {
                    code,
                    message: format!("{message} script: f_{sha}"),
                },
                // The script's own error (an assertion): its first line, without mlua's
                // traceback.
                None => CommandError {
                    code: "ERR",
                    message: format!(
                        "Error running script (call to f_{sha}): {}",
                        e.to_string().lines().next().unwrap_or_default()
                    ),
                },
            })?
    }

    fn load(&mut self, code: &[u8]) -> Result<String, CommandError> {
        let sha = redis::Script::new(&String::from_utf8_lossy(code))
            .get_hash()
            .to_owned();
        if !self.scripts.contains_key(&sha) {
            let function = self
                .lua
                .load(code)
                .set_name(format!("f_{sha}"))
                .into_function()
                .map_err(|e| CommandError {
                    code: "ERR",
                    message: format!("Error compiling script: {e}"),
                })?;
            self.scripts.insert(sha.clone(), function);
        }
        Ok(sha)
    }

    /// The script's reply, or its own error reply; `Err` when it raised one.
    fn run(
        &self,
        function: &Function,
        keyspace: &mut Keyspace,
        keys: &[&[u8]],
        argv: &[&[u8]],
        now_ms: Millis,
        raised: &RefCell<Option<CommandError>>,
    ) -> mlua::Result<Reply> {
        let lua = &self.lua;
        let globals = lua.globals();
        globals.raw_set("KEYS", strings(lua, keys)?)?;
        globals.raw_set("ARGV", strings(lua, argv)?)?;
        let keyspace = RefCell::new(keyspace);
        let redis: Table = globals.raw_get("redis")?;
        let command =
            |lua: &Lua, args: MultiValue| -> mlua::Result<Result<LuaValue, CommandError>> {
                let args = command_args(args)?;
                let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
                let reply = keyspace.borrow_mut().execute(&args, now_ms);
                Ok(match reply {
                    Ok(value) => Ok(to_lua(lua, value)?),
                    Err(e) => Err(e),
                })
            };
        lua.scope(|scope| {
            redis.set(
                "call",
                scope.create_function(|lua, args: MultiValue| match command(lua, args)? {
                    Ok(value) => Ok(value),
                    Err(e) => {
                        let message = format!("{} {}", e.code, e.message);
                        *raised.borrow_mut() = Some(e);
                        Err(mlua::Error::RuntimeError(message))
                    }
                })?,
            )?;
            redis.set(
                "pcall",
                scope.create_function(|lua, args: MultiValue| match command(lua, args)? {
                    Ok(value) => Ok(value),
                    Err(e) => {
                        let error = lua.create_table()?;
                        error.set("err", format!("{} {}", e.code, e.message))?;
                        Ok(LuaValue::Table(error))
                    }
                })?,
            )?;
            let returned: LuaValue = function.call(())?;
            from_lua(returned)
        })
    }
}

fn strings(lua: &Lua, values: &[&[u8]]) -> mlua::Result<Table> {
    lua.create_sequence_from(
        values
            .iter()
            .map(|v| lua.create_string(v))
            .collect::<mlua::Result<Vec<_>>>()?,
    )
}

/// `redis.call`'s arguments: strings, and numbers as Redis formats them.
fn command_args(args: MultiValue) -> mlua::Result<Vec<Vec<u8>>> {
    args.into_iter()
        .map(|arg| match arg {
            LuaValue::String(s) => Ok(s.as_bytes().to_vec()),
            LuaValue::Integer(n) => Ok(n.to_string().into_bytes()),
            LuaValue::Number(n) => Ok(number(n).into_bytes()),
            _ => Err(mlua::Error::RuntimeError(
                "Lua redis lib command arguments must be strings or integers".into(),
            )),
        })
        .collect()
}

fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e17 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

fn to_lua(lua: &Lua, value: Value) -> mlua::Result<LuaValue> {
    Ok(match value {
        Value::Nil => LuaValue::Boolean(false),
        Value::Int(n) => LuaValue::Integer(n),
        Value::BulkString(raw) => LuaValue::String(lua.create_string(raw)?),
        Value::Array(items) => LuaValue::Table(
            lua.create_sequence_from(
                items
                    .into_iter()
                    .map(|item| to_lua(lua, item))
                    .collect::<mlua::Result<Vec<_>>>()?,
            )?,
        ),
        Value::Okay => status(lua, "OK")?,
        Value::SimpleString(s) => status(lua, &s)?,
        other => {
            return Err(mlua::Error::RuntimeError(format!(
                "a reply the in-process Redis does not give: {other:?}"
            )))
        }
    })
}

fn status(lua: &Lua, text: &str) -> mlua::Result<LuaValue> {
    let table = lua.create_table()?;
    table.set("ok", text)?;
    Ok(LuaValue::Table(table))
}

/// A script's return value as Redis replies it.
fn from_lua(value: LuaValue) -> mlua::Result<Reply> {
    Ok(Ok(match value {
        LuaValue::Nil | LuaValue::Boolean(false) => Value::Nil,
        LuaValue::Boolean(true) => Value::Int(1),
        LuaValue::Integer(n) => Value::Int(n),
        LuaValue::Number(n) => Value::Int(n as i64),
        LuaValue::String(s) => Value::BulkString(s.as_bytes().to_vec()),
        LuaValue::Table(table) => {
            if let LuaValue::String(err) = table.raw_get::<LuaValue>("err")? {
                return Ok(Err(CommandError {
                    code: "ERR",
                    message: err.to_string_lossy(),
                }));
            }
            if let LuaValue::String(ok) = table.raw_get::<LuaValue>("ok")? {
                return Ok(Ok(Value::SimpleString(ok.to_string_lossy())));
            }
            let mut items = Vec::new();
            for i in 1.. {
                let item: LuaValue = table.raw_get(i)?;
                if item.is_nil() {
                    break;
                }
                // An error inside an array is an error reply of its own on Redis; no script of
                // the store returns one, so here it fails the whole reply.
                match from_lua(item)? {
                    Ok(value) => items.push(value),
                    Err(e) => return Ok(Err(e)),
                }
            }
            Value::Array(items)
        }
        _ => Value::Nil,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(s: &mut Scripting, ks: &mut Keyspace, args: &[&str]) -> Reply {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        s.execute(ks, &args, 1_000)
    }

    #[test]
    fn scripts_convert_values_as_redis_does() {
        let (mut s, mut ks) = (Scripting::new().unwrap(), Keyspace::default());
        let script = "redis.call('HSET', KEYS[1], 'n', 41) \
                      local n = redis.call('HINCRBY', KEYS[1], 'n', 1) \
                      return {n, redis.call('HGET', KEYS[1], 'n'), redis.call('GET', 'none'), \
                              ARGV[1], 2.9, redis.call('PING')['ok']}";
        assert_eq!(
            run(&mut s, &mut ks, &["EVAL", script, "1", "h", "arg"]),
            Ok(Value::Array(vec![
                Value::Int(42),
                Value::BulkString(b"42".to_vec()),
                Value::Nil,
                Value::BulkString(b"arg".to_vec()),
                Value::Int(2),
                Value::BulkString(b"PONG".to_vec()),
            ]))
        );
    }

    #[test]
    fn an_unknown_sha_is_noscript_and_a_failed_call_keeps_earlier_writes() {
        let (mut s, mut ks) = (Scripting::new().unwrap(), Keyspace::default());
        let script = "redis.call('SET', KEYS[1], 'v') return redis.call('HGET', KEYS[1], 'f')";
        let sha = redis::Script::new(script).get_hash().to_owned();
        assert_eq!(
            run(&mut s, &mut ks, &["EVALSHA", &sha, "1", "k"])
                .unwrap_err()
                .code,
            "NOSCRIPT"
        );
        run(&mut s, &mut ks, &["SCRIPT", "LOAD", script]).unwrap();
        let failed = run(&mut s, &mut ks, &["EVALSHA", &sha, "1", "k"]).unwrap_err();
        assert_eq!(failed.code, "WRONGTYPE", "{failed:?}");
        assert_eq!(
            ks.execute(&[b"GET", b"k"], 1_000),
            Ok(Value::BulkString(b"v".to_vec())),
            "the write before the failure stays"
        );
        let caught = "return redis.pcall('HGET', KEYS[1], 'f')";
        assert!(
            run(&mut s, &mut ks, &["EVAL", caught, "1", "k"]).is_err(),
            "an error reply"
        );
        let assertion = "assert(#ARGV == 2, 'wrong arity') return 1";
        let refused = run(&mut s, &mut ks, &["EVAL", assertion, "0", "a"]).unwrap_err();
        assert!(refused.message.contains("wrong arity"), "{refused:?}");
        assert!(!refused.message.contains('\n'), "one line: {refused:?}");
    }

    #[test]
    fn globals_are_protected_and_time_is_the_clock() {
        let (mut s, mut ks) = (Scripting::new().unwrap(), Keyspace::default());
        for script in [
            "leaked = 1 return 1",
            "return undefined_name",
            "return os.time()",
        ] {
            assert!(
                run(&mut s, &mut ks, &["EVAL", script, "0"]).is_err(),
                "{script}"
            );
        }
        assert_eq!(
            run(&mut s, &mut ks, &["EVAL", "return redis.call('TIME')", "0"]),
            Ok(Value::Array(vec![
                Value::BulkString(b"1".to_vec()),
                Value::BulkString(b"0".to_vec()),
            ]))
        );
    }
}
