//! A backend's process: finding it (by pid, by the port it listens on, or by a name regex) and
//! measuring its whole tree — LM Studio and Ollama run the model in a child process.
//!
//! Memory per tree: RSS summed over the processes, and a footprint that counts what RSS
//! misses — on macOS the physical footprint (`proc_pid_rusage`, no root needed for one's own
//! processes; it includes compressed and Metal-wired memory), on Linux RssAnon + VmSwap from
//! `/proc/PID/status` (Ollama #18106: growth invisible in RSS).
//!
//! Cost: a sample reads only the known members of the tree. On Linux that is two small files
//! (`/proc/PID/stat` of the root, to tell it is the same live process, and `/proc/PID/status` of
//! each member, which holds RSS, RssAnon and VmSwap) instead of sysinfo's full refresh; the whole
//! process table is walked only by `resolve` and a rescan (the sampler's cadence, for new
//! children). The machine's memory is read at most once a second.

use crate::config::ProcessSelector;
use std::collections::HashSet;
use sysinfo::{Pid, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, System, UpdateKind};

/// A process, told apart from a later one that reuses its pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub pid: u32,
    /// Unix seconds.
    pub started_at: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TreeMemory {
    pub root: Identity,
    pub processes: u32,
    pub rss_bytes: u64,
    pub footprint_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemMemory {
    pub used_bytes: u64,
    pub available_bytes: u64,
    pub swap_used_bytes: u64,
}

/// Finds and measures one backend's process tree. Not shared: each sampler owns one.
pub struct Processes {
    selector: ProcessSelector,
    sys: System,
    root: Option<Identity>,
    /// Linux: the root's start time in clock ticks since boot, from `/proc/PID/stat` (exact,
    /// where sysinfo's `started_at` is rounded to seconds).
    root_ticks: Option<u64>,
    tree: Vec<Pid>,
    /// The machine's memory and when it was read.
    system: Option<(std::time::Instant, SystemMemory)>,
}

/// The machine's memory is read again after this long.
const SYSTEM_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl Processes {
    pub fn new(selector: ProcessSelector) -> Self {
        // `System::new` only fails where sysinfo has no support; then nothing can be sampled.
        let sys = System::new().unwrap_or_else(|_| System::new_with_specifics(Default::default()).expect("sysinfo"));
        Processes { selector, sys, root: None, root_ticks: None, tree: Vec::new(), system: None }
    }

    pub fn selector(&self) -> &ProcessSelector {
        &self.selector
    }

    /// Looks the backend's process up again from scratch (all processes are refreshed).
    pub fn resolve(&mut self) -> Option<Identity> {
        let with_cmd = matches!(self.selector, ProcessSelector::Name(_));
        let kind = ProcessRefreshKind::nothing().with_memory();
        let kind = if with_cmd { kind.with_cmd(UpdateKind::OnlyIfNotSet) } else { kind };
        self.sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
        let pid = match &self.selector {
            ProcessSelector::None => None,
            ProcessSelector::Pid(p) => Some(Pid::from_u32(*p)).filter(|p| self.sys.process(*p).is_some()),
            ProcessSelector::Worker(w) => w.get().map(Pid::from_u32).filter(|p| self.sys.process(*p).is_some()),
            ProcessSelector::Port(port) => self.listening_root(*port),
            ProcessSelector::Name(re) => self
                .sys
                .processes()
                .iter()
                .filter(|(pid, p)| {
                    **pid != Pid::from_u32(std::process::id())
                        && p.thread_kind().is_none()
                        && !matches!(p.status(), ProcessStatus::Zombie | ProcessStatus::Dead)
                        && (re.is_match(&p.name().to_string_lossy())
                            || re.is_match(&p.cmd().iter().map(|s| s.to_string_lossy()).collect::<Vec<_>>().join(" ")))
                })
                .min_by_key(|(pid, p)| (p.start_time(), pid.as_u32()))
                .map(|(pid, _)| *pid),
        };
        self.root = pid.and_then(|pid| self.identity(pid));
        self.root_ticks = self.root.and_then(|r| proc_fs::stat(r.pid)).map(|s| s.start_ticks);
        self.tree = match self.root {
            Some(root) => descendants(&self.sys, Pid::from_u32(root.pid)),
            None => Vec::new(),
        };
        self.root
    }

    /// The process listening on `port`; of several (forked workers share a socket), the one
    /// whose parent is not among them.
    fn listening_root(&self, port: u16) -> Option<Pid> {
        let listeners = listeners::get_all().ok()?;
        let pids: HashSet<u32> = listeners
            .iter()
            .filter(|l| {
                l.socket.port() == port
                    && l.protocol == listeners::Protocol::TCP
                    && l.state == listeners::SocketState::Listen
            })
            .map(|l| l.process.pid)
            .collect();
        pids.iter()
            .copied()
            .find(|pid| {
                let parent = self.sys.process(Pid::from_u32(*pid)).and_then(|p| p.parent());
                !parent.is_some_and(|pp| pids.contains(&pp.as_u32()))
            })
            .map(Pid::from_u32)
    }

    /// The process's identity, if it is alive (a zombie — dead, not yet reaped by its parent —
    /// is gone as far as serving goes).
    fn identity(&self, pid: Pid) -> Option<Identity> {
        self.sys
            .process(pid)
            .filter(|p| !matches!(p.status(), ProcessStatus::Zombie | ProcessStatus::Dead))
            .map(|p| Identity { pid: pid.as_u32(), started_at: p.start_time() })
    }

    /// Measures the tree found by the last `resolve`. With `rescan`, all processes are
    /// refreshed so new children are found; otherwise only the known members are read.
    /// `None` when the root is gone (or was never found).
    pub fn measure(&mut self, rescan: bool) -> Option<TreeMemory> {
        let root = self.root?;
        if !rescan && let Some(ticks) = self.root_ticks {
            return self.measure_known(root, ticks);
        }
        let kind = ProcessRefreshKind::nothing().with_memory();
        if rescan {
            self.sys.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
            self.tree = descendants(&self.sys, Pid::from_u32(root.pid));
        } else {
            self.sys.refresh_processes_specifics(ProcessesToUpdate::Some(&self.tree), true, kind);
        }
        if self.identity(Pid::from_u32(root.pid)) != Some(root) {
            self.root = None;
            return None;
        }
        let members: Vec<Pid> = self.tree.iter().copied().filter(|p| self.sys.process(*p).is_some()).collect();
        let rss_bytes = members.iter().filter_map(|p| self.sys.process(*p)).map(|p| p.memory()).sum();
        let footprints: Vec<Option<u64>> = members.iter().map(|p| footprint(p.as_u32())).collect();
        let footprint_bytes = footprints.iter().all(Option::is_some).then(|| footprints.iter().flatten().sum());
        Some(TreeMemory { root, processes: members.len() as u32, rss_bytes, footprint_bytes })
    }

    /// Whether `measure(false)` is a few small file reads (Linux, a known root), cheap enough to
    /// take on an async task.
    pub fn measures_cheaply(&self) -> bool {
        self.root.is_some() && self.root_ticks.is_some()
    }

    /// Linux, between rescans: the root's `stat` (alive, and the same process) and each known
    /// member's `status`, nothing else. Members that exited are left out (a rescan drops them).
    fn measure_known(&mut self, root: Identity, ticks: u64) -> Option<TreeMemory> {
        match proc_fs::stat(root.pid) {
            Some(s) if s.start_ticks == ticks && s.alive => {}
            _ => {
                self.root = None;
                return None;
            }
        }
        let (mut processes, mut rss_bytes, mut footprint_bytes) = (0u32, 0u64, Some(0u64));
        for pid in &self.tree {
            let Some(status) = proc_fs::status(pid.as_u32()) else { continue };
            processes += 1;
            rss_bytes += status.rss_bytes;
            footprint_bytes = footprint_bytes.zip(status.footprint_bytes).map(|(a, b)| a + b);
        }
        Some(TreeMemory { root, processes, rss_bytes, footprint_bytes })
    }

    /// The machine's memory, read again when the last reading is over a second old.
    pub fn system(&mut self) -> SystemMemory {
        if let Some((at, memory)) = self.system
            && at.elapsed() < SYSTEM_EVERY
        {
            return memory;
        }
        self.sys.refresh_memory();
        let memory = SystemMemory {
            used_bytes: self.sys.used_memory(),
            available_bytes: self.sys.available_memory(),
            swap_used_bytes: self.sys.used_swap(),
        };
        self.system = Some((std::time::Instant::now(), memory));
        memory
    }
}

/// Linux's `/proc/PID` files, read directly (elsewhere: nothing, and sysinfo measures).
mod proc_fs {
    pub struct Stat {
        /// Not a zombie or dead.
        pub alive: bool,
        /// Start time, clock ticks after boot (field 22).
        pub start_ticks: u64,
    }

    pub struct Status {
        pub rss_bytes: u64,
        /// RssAnon + VmSwap (the footprint, see the module docs).
        pub footprint_bytes: Option<u64>,
    }

    /// A small /proc file: plain reads into a fixed buffer (no size probe: /proc reports 0).
    #[cfg(target_os = "linux")]
    fn read_small(path: &str) -> Option<String> {
        use std::io::Read;
        let mut file = std::fs::File::open(path).ok()?;
        let mut buf = [0u8; 8192];
        let mut len = 0;
        while len < buf.len() {
            match file.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
        String::from_utf8(buf[..len].to_vec()).ok()
    }

    #[cfg(target_os = "linux")]
    pub fn stat(pid: u32) -> Option<Stat> {
        let text = read_small(&format!("/proc/{pid}/stat"))?;
        // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
        let mut rest = text[text.rfind(')')? + 1..].split_whitespace();
        let state = rest.next()?;
        let start_ticks = rest.nth(18)?.parse().ok()?;
        Some(Stat { alive: !matches!(state, "Z" | "X" | "x"), start_ticks })
    }

    #[cfg(target_os = "linux")]
    pub fn status(pid: u32) -> Option<Status> {
        let text = read_small(&format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> Option<u64> {
            let line = text.lines().find(|l| l.starts_with(name))?;
            line[name.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kb| kb * 1024)
        };
        Some(Status {
            rss_bytes: field("VmRSS:").unwrap_or(0),
            footprint_bytes: field("RssAnon:").map(|anon| anon + field("VmSwap:").unwrap_or(0)),
        })
    }

    #[cfg(not(target_os = "linux"))]
    pub fn stat(_pid: u32) -> Option<Stat> {
        None
    }

    #[cfg(not(target_os = "linux"))]
    pub fn status(_pid: u32) -> Option<Status> {
        None
    }
}

/// `root` and every process below it. Threads are not processes: on Linux sysinfo lists them
/// as children of their process, and each would count the shared memory once more.
fn descendants(sys: &System, root: Pid) -> Vec<Pid> {
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            sys.processes()
                .iter()
                .filter(|(_, p)| p.parent() == Some(parent) && p.thread_kind().is_none())
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    tree
}

/// The memory RSS misses, in bytes (see the module docs).
#[cfg(target_os = "linux")]
pub fn footprint(pid: u32) -> Option<u64> {
    proc_fs::status(pid)?.footprint_bytes
}

#[cfg(target_os = "macos")]
pub fn footprint(pid: u32) -> Option<u64> {
    let mut info: libc::rusage_info_v2 = unsafe { std::mem::zeroed() };
    // SAFETY: `info` is a valid, writable rusage_info_v2 and the flavor matches its layout.
    let rc = unsafe {
        libc::proc_pid_rusage(pid as libc::c_int, libc::RUSAGE_INFO_V2, &mut info as *mut _ as *mut libc::rusage_info_t)
    };
    (rc == 0).then_some(info.ri_phys_footprint)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn footprint(_pid: u32) -> Option<u64> {
    None
}

/// The process listening on `port` on this machine: its pid and name (`soakd discover`).
pub fn listening_process(port: u16) -> Option<(u32, String)> {
    let mut p = Processes::new(ProcessSelector::Port(port));
    let id = p.resolve()?;
    let name =
        p.sys.process(Pid::from_u32(id.pid)).map(|p| p.name().to_string_lossy().into_owned()).unwrap_or_default();
    Some((id.pid, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex::Regex;

    #[test]
    fn finds_a_child_by_pid_and_measures_it() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep runs");
        let mut p = Processes::new(ProcessSelector::Pid(child.id()));
        let id = p.resolve().expect("found");
        assert_eq!(id.pid, child.id());
        let m = p.measure(false).expect("measured");
        assert_eq!(m.processes, 1);
        assert!(m.rss_bytes > 0);
        #[cfg(target_os = "linux")]
        assert!(m.footprint_bytes.is_some());
        child.kill().ok();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(p.measure(false).is_none(), "a killed process is gone even before it is reaped");
        child.wait().ok();
        assert!(p.measure(false).is_none(), "a dead process is gone");
    }

    /// Between rescans (Linux: two /proc files) a sample reads what sysinfo's full refresh reads.
    #[test]
    fn a_known_tree_is_measured_as_a_full_refresh_measures_it() {
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep runs");
        let mut p = Processes::new(ProcessSelector::Pid(child.id()));
        p.resolve().expect("found");
        let full = p.measure(true).expect("measured with a rescan");
        let known = p.measure(false).expect("measured from what is known");
        assert_eq!((known.root, known.processes), (full.root, full.processes));
        let pages = |a: u64, b: u64| a.abs_diff(b) <= 4 * 4096;
        assert!(pages(known.rss_bytes, full.rss_bytes), "{known:?} vs {full:?}");
        assert_eq!(known.footprint_bytes.is_some(), full.footprint_bytes.is_some());
        child.kill().ok();
        child.wait().ok();
    }

    #[test]
    fn finds_the_listener_on_a_port_and_its_children() {
        // The test process itself listens; a child of it is part of its tree.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut child = std::process::Command::new("sleep").arg("30").spawn().expect("sleep runs");
        let mut p = Processes::new(ProcessSelector::Port(port));
        let id = p.resolve().expect("the listener is found");
        assert_eq!(id.pid, std::process::id());
        let m = p.measure(true).expect("measured");
        assert!(m.processes >= 2, "the tree includes the child: {m:?}");
        child.kill().ok();
        child.wait().ok();
    }

    /// Threads share their process's memory: counting them as processes multiplied RSS.
    #[cfg(target_os = "linux")]
    #[test]
    fn threads_are_not_counted_as_processes() {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                })
            })
            .collect();
        let mut p = Processes::new(ProcessSelector::Pid(std::process::id()));
        p.resolve().expect("this process");
        let m = p.measure(true).expect("measured");
        let own: u64 = std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap()
            * 1024;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        threads.into_iter().for_each(|t| t.join().unwrap());
        // Other tests' children (small `sleep`s) may be in the tree; threads (5+) must not be.
        assert!(m.rss_bytes < own * 2, "tree RSS {} vs this process's {own}: threads counted?", m.rss_bytes);
    }

    #[test]
    fn finds_by_name_but_never_itself() {
        let mut child = std::process::Command::new("sleep").arg("31.5").spawn().expect("sleep runs");
        let mut p = Processes::new(ProcessSelector::Name(Regex::new(r"sleep 31\.5").unwrap()));
        assert_eq!(p.resolve().map(|i| i.pid), Some(child.id()));
        child.kill().ok();
        child.wait().ok();
        let mut none = Processes::new(ProcessSelector::Name(Regex::new("no-such-process-xyz").unwrap()));
        assert!(none.resolve().is_none());
    }

    #[test]
    fn system_memory_is_read() {
        let mut p = Processes::new(ProcessSelector::None);
        let s = p.system();
        assert!(s.used_bytes > 0 && s.available_bytes > 0);
        assert!(p.resolve().is_none());
    }
}
