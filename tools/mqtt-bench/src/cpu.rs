//! Where the CPU goes during a run, from `/proc` (Linux; elsewhere the
//! report is empty):
//!
//! - the threads of the system under test: the threads it started in this
//!   process, known by thread id (the ids that appeared while it started;
//!   several instances of one system, e.g. telering with 1 and with 2
//!   shards, are told apart this way), grouped by name (telering:
//!   `telering-shard` for the endpoint's shard threads, `telering-alerts`
//!   and `telering-stats` for the consumer groups; bare rumqttd: `router`,
//!   `bare-rumqttd-v4` and the link reader `bare-link`; mosquitto's
//!   subscriber `mosq-sub`), and its external broker process (mosquitto);
//! - the simulator's threads (`sensor-sim`, exited ones included through
//!   the process total);
//! - the rest of the machine (other people's load).
//!
//! Threads are read every 50 ms and once more at the end; the simulator's
//! threads exit before the end, so what they used in their last 50 ms is
//! taken from the process total (which counts exited threads).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/*/stat` (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;
const EVERY: Duration = Duration::from_millis(50);
/// Name of the simulator's threads (`sim::run_blocking`).
const SIM_THREAD: &str = "sensor-sim";

/// CPU used during a run, in CPU seconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CpuReport {
    /// Wall-clock seconds of the window.
    pub wall_s: f64,
    /// The system's threads grouped by name (`[mosquitto]`: the external
    /// broker process), most first.
    pub system_threads: Vec<(String, f64)>,
    /// The system under test: its threads plus its external process.
    pub system_s: f64,
    /// The simulator.
    pub sim_s: f64,
    /// Other threads of this process (idle systems, this tool).
    pub rest_s: f64,
    /// Everything else the machine ran meanwhile (other processes).
    pub others_s: f64,
}

/// `s` CPU seconds over `n` messages, in µs per message.
pub fn us_per_msg(s: f64, n: u64) -> f64 {
    if n == 0 {
        0.0
    } else {
        (s * 1e8 / n as f64).round() / 100.0
    }
}

impl CpuReport {
    /// One line: the system's thread groups and the simulator, each as a
    /// share of one core over the window.
    pub fn line(&self) -> String {
        if self.wall_s <= 0.0 {
            return "no CPU data".to_owned();
        }
        let pct = |s: f64| 100.0 * s / self.wall_s;
        let threads: Vec<String> = self
            .system_threads
            .iter()
            .map(|(n, s)| format!("{n} {:.0}%", pct(*s)))
            .collect();
        format!(
            "system {:.0}% ({}); simulator {:.0}%; rest of this process {:.0}%; \
             other processes {:.0}%",
            pct(self.system_s),
            threads.join(", "),
            pct(self.sim_s),
            pct(self.rest_s),
            pct(self.others_s)
        )
    }

    /// Adds the CPU of another window (runs of one system over rounds).
    pub fn merge(&mut self, o: &CpuReport) {
        self.wall_s = ms(self.wall_s + o.wall_s);
        self.system_s = ms(self.system_s + o.system_s);
        self.sim_s = ms(self.sim_s + o.sim_s);
        self.rest_s = ms(self.rest_s + o.rest_s);
        self.others_s = ms(self.others_s + o.others_s);
        for (name, s) in &o.system_threads {
            match self.system_threads.iter_mut().find(|(n, _)| n == name) {
                Some(x) => x.1 = ms(x.1 + s),
                None => self.system_threads.push((name.clone(), *s)),
            }
        }
        self.system_threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    }
}

/// Thread ids of this process now.
pub fn thread_ids() -> HashSet<u32> {
    let mut out = Vec::new();
    tasks_of(std::process::id(), &mut out);
    out.into_iter().map(|((_, tid), _, _)| tid).collect()
}

#[derive(Debug, Clone)]
struct Task {
    name: String,
    /// CPU ns at the start of the window (0 for a task born in it).
    base: u64,
    last: u64,
}

/// `((pid, tid), name, CPU ns)` of every task of `pid`.
fn tasks_of(pid: u32, out: &mut Vec<((u32, u32), String, u64)>) {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for e in dir.flatten() {
        let Some(tid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let base = format!("/proc/{pid}/task/{tid}");
        let name = fs::read_to_string(format!("{base}/comm"))
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let ns = fs::read_to_string(format!("{base}/schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .or_else(|| {
                let stat = fs::read_to_string(format!("{base}/stat")).ok()?;
                Some((stat_cpu_s(&stat)? * 1e9) as u64)
            });
        if let Some(ns) = ns {
            out.push(((pid, tid), name, ns));
        }
    }
}

/// utime + stime, seconds, from a `/proc/*/stat` line.
fn stat_cpu_s(stat: &str) -> Option<f64> {
    // The name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line are 12 and 13 after the name.
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / TICKS)
}

fn process_cpu_s(pid: u32) -> Option<f64> {
    stat_cpu_s(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Busy seconds of the whole machine (all cores) from `/proc/stat`.
fn machine_busy_s() -> Option<f64> {
    let s = fs::read_to_string("/proc/stat").ok()?;
    let line = s.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    Some(busy as f64 / TICKS)
}

/// The group of a thread name: a trailing `-<number>` (member id) and a
/// trailing `-` (names are cut at 15 bytes) dropped:
/// `telering-shard-1` -> `telering-shard`, `telering-stats-` ->
/// `telering-stats`.
fn group(name: &str) -> String {
    let name = match name.rsplit_once('-') {
        Some((head, n)) if !head.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => name,
    };
    name.to_owned()
}

/// Rounded to the millisecond.
fn ms(s: f64) -> f64 {
    (s * 1e3).round() / 1e3
}

/// CPU seconds used so far by the threads `owned` of this process and by
/// every thread of the processes `external` (ns resolution).
fn used_s(owned: &HashSet<u32>, external: &[u32], buf: &mut Vec<((u32, u32), String, u64)>) -> f64 {
    buf.clear();
    tasks_of(std::process::id(), buf);
    buf.retain(|((_, tid), _, _)| owned.contains(tid));
    for &pid in external {
        tasks_of(pid, buf);
    }
    buf.iter().map(|(_, _, ns)| *ns).sum::<u64>() as f64 / 1e9
}

/// Waits until the system (threads `owned` of this process, processes
/// `external`) uses less than `share` of one core over `window`, at most
/// `limit`; returns how long that took. A broker that still works after
/// its last message was delivered (mosquitto frees what a QoS 1 run
/// queued) would otherwise use the next system's run.
pub fn settle(
    owned: &HashSet<u32>,
    external: &[u32],
    window: Duration,
    share: f64,
    limit: Duration,
) -> Duration {
    let start = Instant::now();
    let mut buf = Vec::new();
    let mut last = used_s(owned, external, &mut buf);
    loop {
        std::thread::sleep(window);
        let now = used_s(owned, external, &mut buf);
        if now - last < share * window.as_secs_f64() || start.elapsed() >= limit {
            return start.elapsed();
        }
        last = now;
    }
}

/// Samples CPU until [`Monitor::finish`].
pub struct Monitor {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<HashMap<(u32, u32), Task>>>,
    owned: HashSet<u32>,
    external: Vec<u32>,
    started: Instant,
    process0: Option<f64>,
    external0: f64,
    machine0: Option<f64>,
}

impl Monitor {
    /// Starts sampling this process and the `external` processes; `owned`
    /// are the thread ids of this process that belong to the system.
    pub fn start(owned: HashSet<u32>, external: Vec<u32>) -> Self {
        let me = std::process::id();
        let pids: Vec<u32> = std::iter::once(me)
            .chain(external.iter().copied())
            .collect();
        let mut initial = HashMap::new();
        let mut buf = Vec::new();
        for &pid in &pids {
            tasks_of(pid, &mut buf);
        }
        for (key, name, ns) in buf.drain(..) {
            initial.insert(
                key,
                Task {
                    name,
                    base: ns,
                    last: ns,
                },
            );
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("bench-cpu".into())
            .spawn(move || {
                let mut tasks = initial;
                let mut buf = Vec::new();
                loop {
                    // Acquire: pairs with the Release in `finish`.
                    let last_round = flag.load(Ordering::Acquire);
                    for &pid in &pids {
                        tasks_of(pid, &mut buf);
                    }
                    for (key, name, ns) in buf.drain(..) {
                        let t = tasks.entry(key).or_insert(Task {
                            name: String::new(),
                            base: 0,
                            last: 0,
                        });
                        t.name = name;
                        t.last = t.last.max(ns);
                    }
                    if last_round {
                        return tasks;
                    }
                    std::thread::sleep(EVERY);
                }
            })
            .ok();
        Self {
            stop,
            handle,
            owned,
            external0: external.iter().filter_map(|&p| process_cpu_s(p)).sum(),
            external,
            started: Instant::now(),
            process0: process_cpu_s(me),
            machine0: machine_busy_s(),
        }
    }

    /// Stops sampling and sums up.
    pub fn finish(mut self) -> CpuReport {
        let wall_s = self.started.elapsed().as_secs_f64();
        self.stop.store(true, Ordering::Release);
        let tasks = self
            .handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let me = std::process::id();
        let mut system: BTreeMap<String, f64> = BTreeMap::new();
        let (mut sim_seen, mut rest_seen) = (0.0, 0.0);
        for ((pid, tid), t) in &tasks {
            let s = t.last.saturating_sub(t.base) as f64 / 1e9;
            if *pid != me {
                *system.entry(format!("[{}]", group(&t.name))).or_default() += s;
            } else if self.owned.contains(tid) {
                *system.entry(group(&t.name)).or_default() += s;
            } else if t.name == SIM_THREAD {
                sim_seen += s;
            } else {
                rest_seen += s;
            }
        }
        let process_s = match (self.process0, process_cpu_s(me)) {
            (Some(a), Some(b)) => (b - a).max(0.0),
            _ => 0.0,
        };
        // The external processes from their threads (ns), or their totals.
        let external_threads: f64 = system
            .iter()
            .filter(|(n, _)| n.starts_with('['))
            .map(|(_, s)| s)
            .sum();
        let external_total = (self
            .external
            .iter()
            .filter_map(|&p| process_cpu_s(p))
            .sum::<f64>()
            - self.external0)
            .max(0.0);
        let external_s = if external_threads > 0.0 {
            external_threads
        } else {
            external_total
        };
        let machine_busy_s = match (self.machine0, machine_busy_s()) {
            (Some(a), Some(b)) => (b - a).max(0.0),
            _ => 0.0,
        };
        let in_process: f64 = system
            .iter()
            .filter(|(n, _)| !n.starts_with('['))
            .map(|(_, s)| s)
            .sum();
        // Threads are measured in ns, the process total in 10 ms ticks: use
        // the total only to account for the simulator's exited threads.
        let sim_s = sim_seen.max(process_s - in_process - rest_seen);
        let mut system_threads: Vec<(String, f64)> = system
            .into_iter()
            .filter(|(_, s)| *s >= 0.0005)
            .map(|(n, s)| (n, ms(s)))
            .collect();
        system_threads.sort_by(|a, b| b.1.total_cmp(&a.1));
        let others =
            machine_busy_s - process_s.max(in_process + sim_s + rest_seen) - external_total;
        CpuReport {
            wall_s: ms(wall_s),
            system_s: ms(in_process + external_s),
            system_threads,
            sim_s: ms(sim_s),
            rest_s: ms(rest_seen),
            others_s: ms(others.max(0.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_reports_add_up() {
        let mut a = CpuReport {
            wall_s: 1.0,
            system_threads: vec![("x".into(), 0.5), ("y".into(), 0.1)],
            system_s: 0.6,
            ..CpuReport::default()
        };
        let b = CpuReport {
            wall_s: 2.0,
            system_threads: vec![("y".into(), 0.7)],
            system_s: 0.7,
            ..CpuReport::default()
        };
        a.merge(&b);
        assert_eq!(a.wall_s, 3.0);
        assert_eq!(a.system_s, 1.3);
        assert_eq!(a.system_threads, vec![("y".into(), 0.8), ("x".into(), 0.5)]);
        assert_eq!(us_per_msg(1.0, 0), 0.0);
    }

    #[test]
    fn groups_and_stat_lines() {
        assert_eq!(group("telering-alerts-3"), "telering-alerts");
        assert_eq!(group("telering-stats-"), "telering-stats");
        assert_eq!(group("router-0"), "router");
        // comm is cut at 15 bytes: `telering-shard-0` reads `telering-shard-`.
        assert_eq!(group("telering-shard-"), "telering-shard");
        assert_eq!(group("telering-shard-1"), "telering-shard");
        assert_eq!(group("telering-alerts"), "telering-alerts");
        assert_eq!(group("bare-rumqttd-v4"), "bare-rumqttd-v4");
        assert_eq!(group("sensor-sim"), "sensor-sim");
        assert_eq!(group("42"), "42");
        let line = "12 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20";
        assert_eq!(stat_cpu_s(line), Some(3.0));
    }

    #[test]
    fn an_idle_system_settles_at_once() {
        let owned = HashSet::from([u32::MAX]);
        let d = settle(
            &owned,
            &[],
            Duration::from_millis(10),
            0.05,
            Duration::from_secs(1),
        );
        assert!(d < Duration::from_millis(500), "{d:?}");
    }

    #[test]
    fn a_busy_thread_is_seen() {
        let owned = thread_ids();
        let m = Monitor::start(owned, Vec::new());
        let t = std::time::Instant::now();
        let mut x = 0u64;
        while t.elapsed() < Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let r = m.finish();
        if std::path::Path::new("/proc/self/task").exists() {
            assert!(r.system_s > 0.01, "{r:?}");
        }
    }
}
