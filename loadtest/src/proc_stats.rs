//! Reading a process's CPU time and resident memory from /proc (`stat` and `status`).

use std::fs;

use anyhow::{bail, Context, Result};
use serde::Serialize;

/// One reading of a process's counters.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct ProcSample {
    /// utime + stime, in microseconds.
    pub(crate) cpu_us: u64,
    /// VmRSS, in KiB.
    pub(crate) rss_kib: u64,
}

/// Which process to read: the server under test, or this tool itself.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Proc {
    Pid(u32),
    SelfProc,
}

impl Proc {
    fn dir(self) -> String {
        match self {
            Proc::Pid(pid) => format!("/proc/{pid}"),
            Proc::SelfProc => "/proc/self".to_owned(),
        }
    }

    /// Reads CPU time and RSS now.
    pub(crate) fn sample(self) -> Result<ProcSample> {
        let dir = self.dir();
        let stat = fs::read_to_string(format!("{dir}/stat"))
            .with_context(|| format!("reading {dir}/stat"))?;
        let status = fs::read_to_string(format!("{dir}/status"))
            .with_context(|| format!("reading {dir}/status"))?;
        let ticks = parse_cpu_ticks(&stat).with_context(|| format!("parsing {dir}/stat"))?;
        Ok(ProcSample {
            cpu_us: ticks_to_us(ticks, clock_ticks_per_second()),
            rss_kib: parse_vm_rss_kib(&status).with_context(|| format!("parsing {dir}/status"))?,
        })
    }
}

/// An optional sampler: `None` when no `--server-pid` was given. Read errors after the first
/// successful sample (the server died) become `None` readings, not a failed run.
pub(crate) fn sample_opt(proc: Option<Proc>) -> Option<ProcSample> {
    proc.and_then(|p| p.sample().ok())
}

/// CPU time every process on the machine has used since boot (all CPUs, idle and iowait
/// excluded), in microseconds: the first line of `/proc/stat`. Used to notice other work
/// (a build, a test run) competing with a benchmark.
pub(crate) fn machine_busy_us() -> Option<u64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy_ticks(&stat).map(|t| ticks_to_us(t, clock_ticks_per_second()))
}

/// user + nice + system + irq + softirq + steal from the aggregate `cpu` line.
fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map_while(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user already)
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    (f.len() >= 4).then(|| get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// CPU used by everything but the watched processes (the server, and in a multi-process run
/// its peers) and this tool between two readings.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuWindow {
    machine_us: Option<u64>,
    watched_us: Option<u64>,
    self_us: Option<u64>,
}

impl CpuWindow {
    /// Starts a window over `watched`; with nothing watched there is nothing to separate.
    pub(crate) fn start(watched: &[Proc]) -> Self {
        Self {
            machine_us: machine_busy_us(),
            watched_us: cpu_sum(watched),
            self_us: sample_opt(Some(Proc::SelfProc)).map(|s| s.cpu_us),
        }
    }

    /// CPU µs other processes used since `self` (`None` without a watched process, or when
    /// one of them could not be read).
    pub(crate) fn others_since(&self, watched: &[Proc]) -> Option<u64> {
        let now = Self::start(watched);
        let machine = now.machine_us? - self.machine_us?;
        let watched = now.watched_us? - self.watched_us?;
        let own = now.self_us? - self.self_us?;
        Some(machine.saturating_sub(watched + own))
    }
}

/// utime + stime of every process in `procs`, summed; `None` if `procs` is empty or one of
/// them cannot be read.
fn cpu_sum(procs: &[Proc]) -> Option<u64> {
    if procs.is_empty() {
        return None;
    }
    procs
        .iter()
        .map(|p| p.sample().ok().map(|s| s.cpu_us))
        .sum()
}

/// `sysconf(_SC_CLK_TCK)`; Linux has used 100 for decades, which is also the fallback.
fn clock_ticks_per_second() -> u64 {
    match rustix::param::clock_ticks_per_second() {
        0 => 100,
        n => n,
    }
}

fn ticks_to_us(ticks: u64, hz: u64) -> u64 {
    ticks.saturating_mul(1_000_000) / hz
}

/// utime + stime (fields 14 and 15) of `/proc/PID/stat`, in clock ticks. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted after the last `)`.
fn parse_cpu_ticks(stat: &str) -> Result<u64> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no ')' after the command name")?;
    // After the `)` the first field is field 3 (state), so field 14 is at index 11.
    let mut fields = after.split_whitespace().skip(11);
    let utime: u64 = fields
        .next()
        .context("no utime")?
        .parse()
        .context("utime")?;
    let stime: u64 = fields
        .next()
        .context("no stime")?
        .parse()
        .context("stime")?;
    Ok(utime + stime)
}

/// `VmRSS:   12345 kB` from `/proc/PID/status`.
fn parse_vm_rss_kib(status: &str) -> Result<u64> {
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let mut parts = rest.split_whitespace();
            let value: u64 = parts.next().context("VmRSS without a value")?.parse()?;
            return match parts.next() {
                Some("kB") | None => Ok(value),
                Some(unit) => bail!("VmRSS in unexpected unit {unit}"),
            };
        }
    }
    bail!("no VmRSS line (kernel thread or zombie?)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_name() {
        let stat = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 75 0 0 20 0 \
                    9 0 123456 1000000 500 18446744073709551615";
        assert_eq!(parse_cpu_ticks(stat).unwrap(), 325);
        assert_eq!(ticks_to_us(325, 100), 3_250_000);
    }

    #[test]
    fn parses_vm_rss() {
        let status = "Name:\tunderstudy\nVmPeak:\t  99999 kB\nVmRSS:\t   20480 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_kib(status).unwrap(), 20480);
        assert!(parse_vm_rss_kib("Name:\tkthreadd\n").is_err());
    }

    #[test]
    fn parses_machine_busy_time() {
        let stat = "cpu  100 5 50 9000 20 3 2 1 0 0\ncpu0 50 2 25 4500 10 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy_ticks(stat), Some(161));
        assert!(machine_busy_us().is_some());
    }

    #[test]
    fn cpu_window_needs_a_watched_process() {
        let window = CpuWindow::start(&[]);
        assert!(window.others_since(&[]).is_none());
        let own = [Proc::SelfProc];
        assert!(cpu_sum(&own).is_some());
        assert!(CpuWindow::start(&own).others_since(&own).is_some());
        assert!(cpu_sum(&[Proc::SelfProc, Proc::Pid(u32::MAX)]).is_none());
    }

    #[test]
    fn samples_this_process() {
        let s = Proc::SelfProc.sample().unwrap();
        assert!(s.rss_kib > 0);
    }
}
