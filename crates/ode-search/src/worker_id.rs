//! Worker ids that say which process on which boot of which machine holds a trial, so a claim
//! can tell at once that a `RUNNING` trial's worker died with its machine's process (a crash,
//! `kill -9`) and re-queue it without waiting for its lease to expire.
//!
//! A worker id is `ode1;host=H;boot=B;pidns=N;pid=P;start=S;thread=T`: the host name, the
//! kernel's boot id (`/proc/sys/kernel/random/boot_id`), the pid namespace
//! (`/proc/self/ns/pid`, so containers sharing a kernel do not judge each other's pids), the
//! process id, the process start time in clock ticks after boot (field 22 of
//! `/proc/PID/stat`, because pids are reused) and the worker thread. Ids in any other form
//! (older `host-pid-thread` ids, Optuna's workers, machines without `/proc`) are kept as they are
//! and their trials fall back to lease expiry.

use std::fmt;

/// Prefix and version of the id format.
const TAG: &str = "ode1";

/// Which process identity a worker id carries (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerId {
    /// Host name (for people; liveness is decided by `boot` and `pidns`).
    pub host: String,
    /// The kernel's boot id.
    pub boot: String,
    /// The pid namespace's inode number.
    pub pidns: u64,
    /// Process id.
    pub pid: u32,
    /// Process start time, clock ticks after boot.
    pub start: u64,
    /// Worker thread within the process.
    pub thread: usize,
}

impl WorkerId {
    /// This process's id for worker thread `thread`, or `None` where `/proc` cannot tell the
    /// boot id, pid namespace and start time (then use [`fallback_id`]).
    pub fn current(thread: usize) -> Option<Self> {
        let pid = std::process::id();
        Some(Self {
            host: hostname(),
            boot: boot_id()?,
            pidns: pid_namespace()?,
            pid,
            start: process_start(pid)?,
            thread,
        })
    }

    /// Parses an id written by [`fmt::Display`]; `None` for ids in any other form.
    pub fn parse(id: &str) -> Option<Self> {
        let mut parts = id.split(';');
        if parts.next()? != TAG {
            return None;
        }
        let mut fields = std::collections::BTreeMap::new();
        for p in parts {
            let (k, v) = p.split_once('=')?;
            fields.insert(k, v);
        }
        Some(Self {
            host: fields.get("host")?.to_string(),
            boot: fields.get("boot")?.to_string(),
            pidns: fields.get("pidns")?.parse().ok()?,
            pid: fields.get("pid")?.parse().ok()?,
            start: fields.get("start")?.parse().ok()?,
            thread: fields.get("thread")?.parse().ok()?,
        })
    }

    /// Whether this id names a process of this machine's current boot (and pid namespace) that
    /// no longer exists: its pid is gone, is a zombie, or now belongs to a process started at
    /// another time. `false` whenever that cannot be decided from here.
    pub fn is_dead_here(&self) -> bool {
        if boot_id().as_deref() != Some(self.boot.as_str()) || pid_namespace() != Some(self.pidns) {
            return false;
        }
        match process_stat(self.pid) {
            None => std::path::Path::new("/proc/self/stat").exists(),
            Some(stat) => stat.zombie || stat.start != self.start,
        }
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{TAG};host={};boot={};pidns={};pid={};start={};thread={}",
            self.host.replace([';', '='], "_"),
            self.boot,
            self.pidns,
            self.pid,
            self.start,
            self.thread
        )
    }
}

/// The id of worker thread `thread` of this process: a [`WorkerId`] where `/proc` allows,
/// else `host-pid-thread` (whose trials are recovered by lease expiry only).
pub fn worker_id(thread: usize) -> String {
    WorkerId::current(thread).map_or_else(
        || format!("{}-{}-{thread}", hostname(), std::process::id()),
        |w| w.to_string(),
    )
}

/// Whether the worker id `id` (as stored with a trial) names a dead process of this machine;
/// `false` for ids of other machines, of live processes, and in any other form.
pub fn worker_is_dead(id: &str) -> bool {
    WorkerId::parse(id).is_some_and(|w| w.is_dead_here())
}

/// This machine's name, to tell workers apart in the store.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into())
}

/// The kernel's boot id, which changes at every boot.
pub fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty() && !id.contains([';', '='])).then(|| id.to_string())
}

/// The inode number of this process's pid namespace (`pid:[4026531836]`).
fn pid_namespace() -> Option<u64> {
    let link = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let s = link.to_str()?;
    s.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
}

/// What `/proc/PID/stat` says about a process.
struct ProcStat {
    /// Field 22: start time in clock ticks after boot.
    start: u64,
    /// State `Z` (zombie) or `X` (dead): the process has exited.
    zombie: bool,
}

fn process_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Parses `/proc/PID/stat`: the command name (field 2) is in parentheses and may contain
/// spaces and parentheses itself, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field 22 is fields[19].
    Some(ProcStat {
        start: fields.get(19)?.parse().ok()?,
        zombie: matches!(*fields.first()?, "Z" | "X"),
    })
}

/// The start time (clock ticks after boot) of process `pid`.
pub fn process_start(pid: u32) -> Option<u64> {
    process_stat(pid).map(|s| s.start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_other_forms_are_not_parsed() {
        let id = WorkerId {
            host: "a;b=c".into(),
            boot: "0d1c-22".into(),
            pidns: 4026531836,
            pid: 42,
            start: 123456,
            thread: 3,
        };
        let text = id.to_string();
        let back = WorkerId::parse(&text).unwrap();
        assert_eq!(back.host, "a_b_c");
        assert_eq!(
            (back.boot.as_str(), back.pidns, back.pid, back.start, back.thread),
            ("0d1c-22", 4026531836, 42, 123456, 3)
        );
        for old in [
            "myhost-1234-0",
            "",
            "ode1;host=x",
            "ode1;host=x;boot=b;pidns=1;pid=z;start=1;thread=0",
        ] {
            assert_eq!(WorkerId::parse(old), None, "{old}");
            assert!(!worker_is_dead(old), "{old}");
        }
    }

    #[test]
    fn stat_is_parsed_from_the_last_parenthesis() {
        let stat = "77 (a) b (c) S 1 77 77 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 50";
        let s = parse_stat(stat).unwrap();
        assert_eq!(s.start, 98765);
        assert!(!s.zombie);
        assert!(
            parse_stat("12 (x) Z 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 5")
                .unwrap()
                .zombie
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_dead() {
        let Some(me) = WorkerId::current(0) else {
            eprintln!("no /proc here: liveness cannot be checked");
            return;
        };
        assert!(!me.is_dead_here(), "{me}");
        assert!(!worker_is_dead(&me.to_string()));
        // The same pid with another start time is a reused pid: dead.
        assert!(
            WorkerId {
                start: me.start + 1,
                ..me.clone()
            }
            .is_dead_here()
        );
        // Another boot or pid namespace: cannot tell, so alive.
        assert!(
            !WorkerId {
                boot: "other".into(),
                start: me.start + 1,
                ..me.clone()
            }
            .is_dead_here()
        );
        assert!(
            !WorkerId {
                pidns: me.pidns + 1,
                start: me.start + 1,
                ..me.clone()
            }
            .is_dead_here()
        );
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = process_start(pid);
        child.wait().unwrap();
        let dead = WorkerId {
            pid,
            start: start.unwrap_or(0),
            ..me
        };
        assert!(dead.is_dead_here(), "{dead}");
    }
}
