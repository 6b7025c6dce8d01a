//! The names soakd records, typed: what an `events` row says happened (`EventKind`), what fired
//! a run (`Trigger`), what a finding is about (`FindingKind`) and when a sample was taken
//! (`Phase`). Each is stored as its `as_str`; `ALL` lists every one, so a stored name reads back
//! to the same value and a test can check the names are unique.

use serde::Serialize;
use std::fmt;

macro_rules! names {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name as stored.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The value stored as `s`, if it is one of these.
            pub fn from_stored(s: &str) -> Option<$name> {
                $name::ALL.iter().copied().find(|k| k.as_str() == s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

names! {
    /// What an `events` row says happened (db/README.md, `events.kind`).
    EventKind {
        /// The server's `/health` changed.
        HealthChanged = "health_changed",
        /// A new pid or start time for a backend's process.
        Restart = "restart",
        ProcessFound = "process_found",
        ProcessMissing = "process_missing",
        /// A run could not start (its API key variable is unset, …).
        RunFailed = "run_failed",
        /// A worker process (kinds `mlx-lm`, `mlx`) ended.
        WorkerExit = "worker_exit",
        /// soakd's own write waited over a second for the database.
        DbStall = "db_stall",
        DaemonStart = "daemon_start",
        DaemonStop = "daemon_stop",
        /// The previous daemon session ended without stopping.
        UncleanStop = "unclean_stop",
        /// LM Studio unloaded the model.
        ModelUnloaded = "model_unloaded",
        /// LM Studio loaded the model again.
        ModelLoaded = "model_loaded",
        /// Ollama reloaded the model.
        ModelReload = "model_reload",
        /// A job fired once for fire times missed during a sleep or a clock jump.
        CatchUp = "catch_up",
        ClockJump = "clock_jump",
        /// Retention rolled raw rows up.
        Pruned = "pruned",
    }
}

names! {
    /// What fired a run (`runs.trigger`).
    Trigger {
        /// The daemon's schedule.
        Cron = "cron",
        /// `soakd once`.
        Once = "once",
        /// `soakd demo`.
        Demo = "demo",
    }
}

names! {
    /// What a finding is about (`findings.kind`; the report's `findings[].kind`).
    FindingKind {
        Leak = "leak",
        Plateau = "plateau",
        Step = "step",
        Wedged = "wedged",
        SilentFailure = "silent_failure",
        FailureRate = "failure_rate",
        Restarts = "restarts",
        CrashPattern = "crash_pattern",
        CrashConfounded = "crash_confounded",
        CrashAtRequestCount = "crash_at_request_count",
        Hypothesis = "hypothesis",
        Drift = "drift",
        ApiOverhead = "api_overhead",
        /// A kind a newer soakd saved, read back by this one.
        Other = "other",
    }
}

impl FindingKind {
    /// The kind stored as `s`; one this soakd does not know (a newer one saved it) is `Other`.
    pub fn read(s: &str) -> FindingKind {
        FindingKind::from_stored(s).unwrap_or(FindingKind::Other)
    }
}

names! {
    /// When a sample was taken, relative to the requests in flight (`memory_samples.phase`,
    /// `server_samples.phase`).
    Phase {
        /// On the idle cadence, no workload running.
        Idle = "idle",
        /// Just before a request, none in flight (or before a workload, for a server sample).
        Before = "before",
        /// Just after a request, none left in flight (or after a workload).
        After = "after",
        /// While requests are in flight.
        During = "during",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unique_snake_case(names: Vec<&'static str>) {
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "{names:?}");
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')), "{names:?}");
    }

    #[test]
    fn names_are_unique_and_read_back() {
        unique_snake_case(EventKind::ALL.iter().map(|k| k.as_str()).collect());
        unique_snake_case(Trigger::ALL.iter().map(|k| k.as_str()).collect());
        unique_snake_case(FindingKind::ALL.iter().map(|k| k.as_str()).collect());
        unique_snake_case(Phase::ALL.iter().map(|k| k.as_str()).collect());
        for k in FindingKind::ALL {
            assert_eq!(FindingKind::read(k.as_str()), *k);
        }
        assert_eq!(FindingKind::read("from_a_newer_soakd"), FindingKind::Other);
        assert_eq!(serde_json::to_string(&FindingKind::SilentFailure).unwrap(), "\"silent_failure\"");
    }
}
