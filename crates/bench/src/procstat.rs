//! Samples a process's CPU time and resident memory from /proc while a benchmark runs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reading {
    /// User plus system CPU time.
    pub cpu: Duration,
    pub rss_kib: u64,
}

/// Clock ticks per second of /proc/PID/stat times (USER_HZ), read once from `getconf`.
pub fn ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// Reads `/proc/PID/stat` and `/proc/PID/status`.
pub fn read(pid: u32, ticks: u64) -> std::io::Result<Reading> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse(&stat, &status, ticks)
        .ok_or_else(|| std::io::Error::other(format!("unreadable /proc/{pid} files")))
}

fn parse(stat: &str, status: &str, ticks: u64) -> Option<Reading> {
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 (utime) and 15 (stime), counted from 1 over the whole line.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())?;
    let ticks = ticks.max(1);
    let cpu = Duration::from_nanos((utime + stime) * 1_000_000_000 / ticks);
    Some(Reading { cpu, rss_kib })
}

/// CPU time the hypervisor gave to others while this machine's CPUs wanted to run (the `steal`
/// column of /proc/stat's `cpu` line, summed over CPUs). A virtual machine's latency tail moves
/// with it, so runs report it.
pub fn machine_steal() -> Option<Duration> {
    parse_steal(
        &std::fs::read_to_string("/proc/stat").ok()?,
        ticks_per_second(),
    )
}

fn parse_steal(stat: &str, ticks: u64) -> Option<Duration> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    // cpu user nice system idle iowait irq softirq steal ...
    let steal: u64 = line.split_whitespace().nth(8)?.parse().ok()?;
    Some(Duration::from_nanos(steal * 1_000_000_000 / ticks.max(1)))
}

/// Samples a process in the background; keeps the first, the latest and the peak RSS.
pub struct Sampler {
    pid: u32,
    ticks: u64,
    state: Arc<Mutex<SamplerState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Default, Clone, Copy)]
struct SamplerState {
    latest: Reading,
    peak_rss_kib: u64,
}

impl Sampler {
    pub fn start(pid: u32) -> std::io::Result<Sampler> {
        let ticks = ticks_per_second();
        let first = read(pid, ticks)?;
        let state = Arc::new(Mutex::new(SamplerState {
            latest: first,
            peak_rss_kib: first.rss_kib,
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let Ok(r) = read(pid, ticks) else { return };
                let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                s.latest = r;
                s.peak_rss_kib = s.peak_rss_kib.max(r.rss_kib);
            }
        });
        Ok(Sampler {
            pid,
            ticks,
            state,
            task,
        })
    }

    /// A fresh reading now (falls back to the latest sample if the process is gone).
    pub fn now(&self) -> Reading {
        let latest = self.state.lock().unwrap_or_else(|p| p.into_inner()).latest;
        read(self.pid, self.ticks).unwrap_or(latest)
    }

    pub fn peak_rss_kib(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .peak_rss_kib
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "4242 (tidings (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3 0 100 0 0";
        let status = "Name:\ttidings\nVmPeak:\t 9000 kB\nVmRSS:\t   12345 kB\n";
        let r = parse(stat, status, 100).unwrap();
        assert_eq!(r.cpu, Duration::from_secs(3));
        assert_eq!(r.rss_kib, 12345);
    }

    #[test]
    fn parses_steal_from_the_cpu_line() {
        let stat = "cpu  49595 0 11804 51492 2966 0 1590 1986 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_steal(stat, 100), Some(Duration::from_millis(19_860)));
        assert_eq!(parse_steal("cpu0 1 2 3\n", 100), None);
    }

    #[test]
    fn reads_this_process() {
        let r = read(std::process::id(), ticks_per_second()).unwrap();
        assert!(r.rss_kib > 0);
    }
}
