//! Figures: latency percentiles, and CPU time and memory of the server (from `/proc`) and of
//! the generator itself (`getrusage`).

use std::time::Duration;

use serde::Serialize;

/// Nearest-rank percentile (`p` in 0..=100) of samples sorted ascending; `None` when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len().max(1)) - 1).copied()
}

/// Latency figures, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Summary {
    /// Sorts `samples` in place; `None` when there are none.
    pub fn of(samples: &mut [Duration]) -> Option<Summary> {
        samples.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let total: Duration = samples.iter().sum();
        Some(Summary {
            p50_ms: ms(percentile(samples, 50.0)?),
            p99_ms: ms(percentile(samples, 99.0)?),
            max_ms: ms(*samples.last()?),
            mean_ms: ms(total) / samples.len() as f64,
        })
    }
}

/// CPU time (user + system) and resident memory of a process at one moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProcSample {
    pub cpu: Duration,
    pub rss_kib: u64,
}

/// Reads `/proc/PID/stat` (utime + stime) and `/proc/PID/status` (VmRSS).
pub fn sample_process(pid: u32) -> std::io::Result<ProcSample> {
    let bad = |what: &str| std::io::Error::other(format!("cannot parse {what} of process {pid}"));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let ticks = cpu_ticks(&stat).ok_or_else(|| bad("stat"))?;
    let rss_kib = vm_rss_kib(&status).ok_or_else(|| bad("VmRSS"))?;
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(ProcSample {
        cpu: Duration::from_secs_f64(ticks as f64 / hz as f64),
        rss_kib,
    })
}

/// utime + stime, in clock ticks, from the text of `/proc/PID/stat`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count fields after its end.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11); // field 3 (state) is index 0
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The `VmRSS:` line of `/proc/PID/status`, in KiB.
fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How many files process `pid` has open (for a server: about one per connection).
pub fn open_files(pid: u32) -> std::io::Result<usize> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// CPU time every process on the machine has used so far (all cores: user, nice, system,
/// interrupts, steal), from `/proc/stat`.
pub fn machine_cpu() -> std::io::Result<Duration> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks = busy_ticks(&stat)
        .ok_or_else(|| std::io::Error::other("cannot parse the cpu line of /proc/stat"))?;
    // SAFETY: sysconf only reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Ok(Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// Busy ticks of all cores from the text of `/proc/stat`: every field of the first line but
/// idle and iowait (guest time is already counted in user).
fn busy_ticks(stat: &str) -> Option<u64> {
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, _idle, _iowait, irq, softirq, steal, ..] = fields[..] else {
        return None;
    };
    Some(user + nice + system + irq + softirq + steal)
}

/// Memory the kernel holds in TCP buffers, all sockets of the machine, in KiB (what a server
/// cannot send to a slow reader waits there before it waits in the server).
pub fn tcp_buffers_kib() -> std::io::Result<u64> {
    let sockstat = std::fs::read_to_string("/proc/net/sockstat")?;
    let pages = tcp_mem_pages(&sockstat)
        .ok_or_else(|| std::io::Error::other("no TCP mem in /proc/net/sockstat"))?;
    // SAFETY: sysconf only reads a constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    Ok(pages * page / 1024)
}

/// The `mem` pages of the `TCP:` line of `/proc/net/sockstat`.
fn tcp_mem_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|l| l.starts_with("TCP:"))?;
    let mut fields = line.split_whitespace();
    fields.find(|&f| f == "mem")?;
    fields.next()?.parse().ok()
}

/// CPU time (user + system, all threads) this process has used so far.
pub fn own_cpu() -> Duration {
    // SAFETY: getrusage fills the zeroed struct we pass and touches nothing else.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Samples the server under test, if its PID is known; a sample that cannot be taken is
/// reported once on stderr and left out.
#[derive(Clone, Copy, Debug)]
pub struct ServerProbe(pub Option<u32>);

impl ServerProbe {
    pub fn sample(self) -> Option<ProcSample> {
        let pid = self.0?;
        sample_process(pid)
            .inspect_err(|e| eprintln!("verona-bench: sampling server {pid}: {e}"))
            .ok()
    }
}

/// CPU used between two samples, as a share of one core over `wall`.
pub fn core_share(cpu: Duration, wall: Duration) -> f64 {
    cpu.as_secs_f64() / wall.as_secs_f64().max(f64::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let hundred = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&hundred, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&hundred, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(
            percentile(&hundred, 100.0),
            Some(Duration::from_millis(100))
        );
        assert_eq!(percentile(&hundred, 0.0), Some(Duration::from_millis(1)));
        let three = ms(&[10, 20, 30]);
        assert_eq!(percentile(&three, 50.0), Some(Duration::from_millis(20)));
        assert_eq!(percentile(&three, 99.0), Some(Duration::from_millis(30)));
        assert_eq!(percentile(&ms(&[7]), 99.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_sorts_and_averages() {
        let mut samples = ms(&[30, 10, 20, 40]);
        let summary = Summary::of(&mut samples).unwrap();
        assert_eq!(
            summary,
            Summary {
                p50_ms: 20.0,
                p99_ms: 40.0,
                max_ms: 40.0,
                mean_ms: 25.0
            }
        );
        assert_eq!(Summary::of(&mut []), None);
    }

    #[test]
    fn proc_stat_fields() {
        let stat = "1234 (tokio (rt) x) S 1 1234 1234 0 -1 4194560 500 0 0 0 \
                    170 42 0 0 20 0 3 0 100 1000000 200 18446744073709551615";
        assert_eq!(cpu_ticks(stat), Some(212));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn proc_status_rss() {
        let status = "Name:\tverona\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(vm_rss_kib(status), Some(12345));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let before = own_cpu();
        let sample = sample_process(std::process::id()).unwrap();
        assert!(sample.rss_kib > 0);
        // Burn a little CPU so the counter moves.
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(own_cpu() > before);
    }

    #[test]
    fn proc_stat_busy_time() {
        let stat = "cpu  100 20 30 4000 50 6 7 8 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(busy_ticks(stat), Some(171));
        assert_eq!(busy_ticks("cpu  1 2 3\n"), None);
        assert_eq!(busy_ticks("intr 1 2 3\n"), None);
        assert!(machine_cpu().unwrap() > Duration::ZERO);
    }

    #[test]
    fn sockstat_tcp_memory() {
        let sockstat = "sockets: used 20\nTCP: inuse 9 orphan 0 tw 2 alloc 10 mem 6211\n\
                        UDP: inuse 0 mem 0\n";
        assert_eq!(tcp_mem_pages(sockstat), Some(6211));
        assert_eq!(tcp_mem_pages("UDP: inuse 0 mem 3\n"), None);
        assert!(tcp_buffers_kib().is_ok());
    }

    #[test]
    fn counts_open_files() {
        // Other tests open files meanwhile: only a lower bound is certain.
        let _held = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(open_files(std::process::id()).unwrap() >= 1);
        assert!(open_files(u32::MAX).is_err());
    }

    #[test]
    fn core_share_of_wall_time() {
        let share = core_share(Duration::from_millis(500), Duration::from_secs(1));
        assert!((share - 0.5).abs() < 1e-9);
    }
}
