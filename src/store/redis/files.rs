//! Redis's append-only files within the privacy rule: each node's file is rewritten at least
//! once a period (a day), and a rewrite counts only once the node itself says it succeeded.
//!
//! An AOF keeps every write until it is rewritten, so without this the commands that wrote an
//! erased user's records (or records long past their rule) stay on disk for as long as traffic
//! leaves the file under Redis's own growth trigger (`auto-aof-rewrite-percentage`).
//!
//! Layout: [`NodeFile`] is what one node's `INFO` says of its file; [`Kept`] is
//! what the service keeps of each node between checks (one field of `keys::AOF_FILES`); [`next`]
//! is the decision, apart from the I/O in `RedisStore::rewrite_aof_if_due`.
//!
//! Each node is judged alone, so a node that is away or refuses holds up none of the others,
//! and a rewrite is confirmed through the node's own counters rather than taken as done when
//! asked: `aof_rewrites` (rewrites started since the node started) moved past its value at the
//! ask, nothing running, and `aof_last_bgrewrite_status:ok`. Any rewrite that started after the
//! ask copies the keys as they were then, so one Redis started on its own counts as well.

use crate::clock::Millis;

/// One `name:value` line of an `INFO` reply.
pub(super) fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
}

/// What a node's `INFO` says of its append-only file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct NodeFile {
    /// The node keeps an append-only file.
    pub aof: bool,
    /// A rewrite is running or scheduled (after a running RDB save).
    pub busy: bool,
    /// Rewrites started since the node started (absent before Redis 7.0).
    pub rewrites: Option<u64>,
    /// The last rewrite that ended succeeded.
    pub last_ok: bool,
    /// The node's process (from its `run_id`): another one behind the same address (a
    /// restart, a failover behind one endpoint) counts its rewrites afresh.
    pub run: u64,
}

impl NodeFile {
    pub fn parse(info: &str) -> Self {
        let one = |name| info_field(info, name) == Some("1");
        NodeFile {
            aof: one("aof_enabled"),
            busy: one("aof_rewrite_in_progress") || one("aof_rewrite_scheduled"),
            rewrites: info_field(info, "aof_rewrites").and_then(|n| n.parse().ok()),
            last_ok: info_field(info, "aof_last_bgrewrite_status") == Some("ok"),
            run: info_field(info, "run_id")
                .and_then(|id| u64::from_str_radix(id.get(..16)?, 16).ok())
                .unwrap_or(0),
        }
    }
}

/// A rewrite asked of a node and not confirmed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Asked {
    /// When (the service's clock).
    pub at_ms: Millis,
    /// The node's `aof_rewrites` when asked.
    pub rewrites: u64,
    /// The node's process when asked ([`NodeFile::run`]).
    pub run: u64,
}

/// What the service keeps of one node's file between checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Kept {
    /// Everything written before this time (the ask of the last confirmed rewrite) has left the
    /// node's file.
    pub covered_ms: Option<Millis>,
    pub asked: Option<Asked>,
}

impl Kept {
    /// `covered,asked_at,rewrites,run` with absent parts empty. Anything else reads as
    /// nothing kept: the node is asked again, which is always safe.
    pub fn decode(text: &str) -> Self {
        let parts: Vec<&str> = text.split(',').collect();
        let covered_ms = parts.first().and_then(|p| p.parse::<i64>().ok());
        let number = |i: usize| parts.get(i).and_then(|p| p.parse::<u64>().ok());
        let asked = match (
            parts.get(1).and_then(|p| p.parse::<i64>().ok()),
            number(2),
            number(3),
        ) {
            (Some(at_ms), Some(rewrites), Some(run)) => Some(Asked {
                at_ms,
                rewrites,
                run,
            }),
            _ => None,
        };
        Kept { covered_ms, asked }
    }

    pub fn encode(&self) -> String {
        let covered = self.covered_ms.map(|c| c.to_string()).unwrap_or_default();
        match self.asked {
            Some(a) => format!("{covered},{},{},{}", a.at_ms, a.rewrites, a.run),
            None => covered,
        }
    }
}

/// Whether the rewrite asked of the node (in `kept`) has run and failed: Redis answered the
/// ask, so nothing else counts it as an error.
pub(super) fn failed(file: &NodeFile, kept: &Kept) -> bool {
    kept.asked.is_some_and(|asked| {
        file.aof
            && !file.busy
            && file.run == asked.run
            && file.rewrites.is_none_or(|n| n > asked.rewrites)
            && !file.last_ok
    })
}

/// What to keep of a node after a check at `now_ms`, and whether to ask it for a rewrite now.
/// A node without an AOF, or rewriting already, is left as it is until a later check.
pub(super) fn next(file: &NodeFile, kept: Kept, now_ms: Millis, period_ms: Millis) -> (Kept, bool) {
    if !file.aof || file.busy {
        return (kept, false);
    }
    let mut kept = kept;
    if let Some(asked) = kept.asked.take() {
        // Otherwise the ask was refused, lost with a restart, or its rewrite failed: asked
        // again. Without the counter (before Redis 7.0), an ask the node accepted and nothing
        // running any more is taken as its rewrite.
        let started = file.rewrites.is_none_or(|n| n > asked.rewrites);
        if file.run == asked.run && started && file.last_ok {
            kept.covered_ms = Some(asked.at_ms);
        }
    }
    // A time more than a period ahead of now (kept by a node whose clock ran far ahead) is not
    // believed: it would hold the rewrite off for as long. Ordinary skew delays it by the skew.
    let due = kept
        .covered_ms
        .is_none_or(|covered| covered - now_ms > period_ms || now_ms - covered >= period_ms);
    if due {
        kept.asked = Some(Asked {
            at_ms: now_ms,
            rewrites: file.rewrites.unwrap_or(0),
            run: file.run,
        });
    }
    (kept, due)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Millis = 86_400_000;
    const RUN: u64 = 0x5a17;

    fn file(rewrites: u64, last_ok: bool) -> NodeFile {
        NodeFile {
            aof: true,
            busy: false,
            rewrites: Some(rewrites),
            last_ok,
            run: RUN,
        }
    }

    fn asked(at_ms: Millis, rewrites: u64) -> Kept {
        Kept {
            covered_ms: None,
            asked: Some(Asked {
                at_ms,
                rewrites,
                run: RUN,
            }),
        }
    }

    #[test]
    fn a_node_never_rewritten_is_asked_and_its_rewrite_confirmed_by_its_counter() {
        let (kept, ask) = next(&file(0, true), Kept::default(), 1_000, DAY);
        assert!(ask);
        assert_eq!(kept, asked(1_000, 0));
        // Asked, started and ended well: covered from the ask on, due again a period later.
        let (kept, ask) = next(&file(1, true), kept, 600_000, DAY);
        assert!(!ask);
        assert_eq!(kept.covered_ms, Some(1_000));
        assert_eq!(kept.asked, None);
        assert!(!next(&file(1, true), kept, DAY, DAY).1);
        assert!(next(&file(1, true), kept, DAY + 1_000, DAY).1);
    }

    #[test]
    fn a_rewrite_that_failed_or_never_started_is_asked_again() {
        let covered = Kept {
            covered_ms: Some(0),
            asked: Some(Asked {
                at_ms: DAY,
                rewrites: 4,
                run: RUN,
            }),
        };
        assert!(failed(&file(5, false), &covered));
        assert!(!failed(&file(5, true), &covered));
        assert!(
            !failed(&file(4, false), &covered),
            "not started: refused, not failed"
        );
        let (kept, ask) = next(&file(5, false), covered, DAY + 600_000, DAY);
        assert!(ask, "the rewrite started and failed");
        assert_eq!(kept.covered_ms, Some(0));
        assert_eq!(kept.asked.map(|a| a.rewrites), Some(5));
        let (_, ask) = next(&file(4, true), covered, DAY + 600_000, DAY);
        assert!(ask, "no rewrite started after the ask");
        let (_, ask) = next(&file(0, true), covered, DAY + 600_000, DAY);
        assert!(ask, "the node restarted");
        // Another process behind the address whose own count is higher: not the one asked.
        let other = NodeFile {
            run: RUN + 1,
            ..file(9, true)
        };
        let (kept, ask) = next(&other, covered, DAY + 600_000, DAY);
        assert!(ask);
        assert_eq!(kept.covered_ms, Some(0));
        assert!(!failed(
            &NodeFile {
                last_ok: false,
                ..other
            },
            &covered
        ));
    }

    #[test]
    fn without_the_counter_an_accepted_ask_and_nothing_running_is_the_rewrite() {
        let old = NodeFile {
            rewrites: None,
            ..file(0, true)
        };
        let (kept, ask) = next(&old, Kept::default(), 1_000, DAY);
        assert!(ask);
        assert!(failed(
            &NodeFile {
                last_ok: false,
                ..old
            },
            &kept
        ));
        let (kept, ask) = next(&old, kept, 600_000, DAY);
        assert!(!ask);
        assert_eq!(kept.covered_ms, Some(1_000));
    }

    #[test]
    fn a_node_rewriting_or_without_a_file_waits_and_keeps_its_ask() {
        let before = asked(1_000, 3);
        let busy = NodeFile {
            busy: true,
            ..file(4, true)
        };
        assert_eq!(next(&busy, before, 5 * DAY, DAY), (before, false));
        let no_aof = NodeFile {
            aof: false,
            ..file(0, true)
        };
        assert_eq!(
            next(&no_aof, Kept::default(), 5 * DAY, DAY),
            (Kept::default(), false)
        );
    }

    #[test]
    fn a_time_kept_from_a_clock_far_ahead_holds_nothing_off() {
        let ahead = |covered_ms| Kept {
            covered_ms: Some(covered_ms),
            asked: None,
        };
        // Skew of a minute: due a period after that time.
        assert!(!next(&file(1, true), ahead(DAY + 60_000), DAY, DAY).1);
        assert!(next(&file(1, true), ahead(DAY + 60_000), 2 * DAY + 60_000, DAY).1);
        // More than a period ahead: not believed.
        assert!(next(&file(1, true), ahead(3 * DAY), DAY, DAY).1);
    }

    #[test]
    fn what_is_kept_reads_back_and_anything_else_reads_as_nothing() {
        for kept in [
            Kept::default(),
            Kept {
                covered_ms: Some(12),
                asked: None,
            },
            asked(7, 2),
            Kept {
                covered_ms: Some(-5),
                asked: Some(Asked {
                    at_ms: 9,
                    rewrites: 0,
                    run: u64::MAX,
                }),
            },
        ] {
            assert_eq!(Kept::decode(&kept.encode()), kept);
        }
        assert_eq!(
            Kept::decode("1700000000000"),
            Kept {
                covered_ms: Some(1_700_000_000_000),
                asked: None
            }
        );
        for junk in ["", "x", ",1", ",1,2", ",1,-2,3", "a,b,c,d"] {
            assert_eq!(Kept::decode(junk).asked, None, "{junk}");
        }
    }

    #[test]
    fn info_says_what_the_file_is() {
        let info = "# Server\r\nrun_id:00000000000000ff9a8b7c6d5e4f30211f2e3d4c\r\n\
                    # Persistence\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\n\
                    aof_rewrite_scheduled:1\r\naof_last_bgrewrite_status:err\r\naof_rewrites:7\r\n";
        assert_eq!(
            NodeFile::parse(info),
            NodeFile {
                aof: true,
                busy: true,
                rewrites: Some(7),
                last_ok: false,
                run: 0xff,
            }
        );
        assert!(!NodeFile::parse("aof_enabled:0\r\n").aof);
        assert_eq!(NodeFile::parse("aof_enabled:1\r\n").rewrites, None);
        // `aof_rewrites_consecutive_failures` is not `aof_rewrites`.
        assert_eq!(
            NodeFile::parse("aof_rewrites_consecutive_failures:3\r\naof_rewrites:1\r\n").rewrites,
            Some(1)
        );
    }
}
