//! Timing: child processes with their own peak RSS, medians, interleaved rounds.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One run of a child process.
#[derive(Clone, Copy, Debug)]
pub struct ChildRun {
    pub wall: Duration,
    /// Peak resident set of the child alone (`ru_maxrss` from `wait4`).
    pub max_rss: u64,
    /// User plus system CPU time: unlike wall time, not stretched while other processes hold
    /// the cores.
    pub cpu: Duration,
}

/// The flag that makes the bench binary a [`measure_main`] helper.
pub const MEASURE_FLAG: &str = "--measure";

/// Runs `cmd` to completion and returns its wall time and its own peak RSS.
///
/// Linux carries a process's RSS high-water mark across `fork` and `exec` (`ru_maxrss` of a
/// child starts at its parent's peak), so a child spawned straight from this process, which has
/// held whole models, would report our peak, not its own. The child is therefore started by a
/// fresh, small helper (this binary with [`MEASURE_FLAG`]) that spawns it, times it, reads its
/// `ru_maxrss` with `wait4` and prints both.
///
/// # Panics
///
/// When the child cannot start or fails; the panic carries its stderr.
pub fn run_child(cmd: &mut Command) -> ChildRun {
    let helper = std::env::current_exe().expect("the bench binary");
    let out = Command::new(helper)
        .arg(MEASURE_FLAG)
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start the measuring helper for {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let fields: Vec<u64> = text.split_whitespace().map(|f| f.parse().expect("helper prints numbers")).collect();
    let [wall, max_rss, cpu] = fields[..] else { panic!("helper printed {text:?}") };
    ChildRun { wall: Duration::from_nanos(wall), max_rss, cpu: Duration::from_nanos(cpu) }
}

/// The helper: runs `args` (program and arguments), then prints its wall time in nanoseconds,
/// its peak RSS in bytes and its CPU time in nanoseconds; exits 1 with the child's stderr when
/// the child fails.
pub fn measure_main(args: &[String]) {
    let (program, rest) = args.split_first().expect("--measure PROGRAM [ARGS...]");
    let start = Instant::now();
    // Reaped by wait4 below, which std's Child::wait cannot stand in for (it drops the rusage).
    #[allow(clippy::zombie_processes)]
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pid is our own child, not yet reaped (std only reaps in wait/try_wait).
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed: {}", std::io::Error::last_os_error());
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        eprint!("{program} {rest:?} failed (wait status {status}):\n{stderr}");
        std::process::exit(1);
    }
    let nanos = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
    // ru_maxrss is in kilobytes on Linux.
    println!("{} {} {}", wall.as_nanos(), usage.ru_maxrss as u64 * 1024, nanos(usage.ru_utime) + nanos(usage.ru_stime));
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    assert!(!xs.is_empty(), "median of nothing");
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Runs every contestant once per round, `rounds` times, rotating who goes first so that no one
/// always runs on a cold (or warm) machine; returns each contestant's runs in its own order.
pub fn interleaved<T>(rounds: usize, contestants: &mut [&mut dyn FnMut() -> T]) -> Vec<Vec<T>> {
    let n = contestants.len();
    let mut results: Vec<Vec<T>> = (0..n).map(|_| Vec::with_capacity(rounds)).collect();
    for round in 0..rounds {
        for i in 0..n {
            let who = (round + i) % n;
            results[who].push(contestants[who]());
        }
    }
    results
}

/// Medians of child runs: wall and CPU time in seconds, peak RSS in bytes.
#[derive(Clone, Copy, Debug)]
pub struct ChildStats {
    pub wall: f64,
    pub cpu: f64,
    pub max_rss: f64,
}

impl ChildStats {
    pub fn of(runs: &[ChildRun]) -> ChildStats {
        ChildStats {
            wall: median(runs.iter().map(|r| r.wall.as_secs_f64()).collect()),
            cpu: median(runs.iter().map(|r| r.cpu.as_secs_f64()).collect()),
            max_rss: median(runs.iter().map(|r| r.max_rss as f64).collect()),
        }
    }
}

/// The median over rounds of `a[i] / b[i]`: runs side by side in time, so slow drifts of the
/// machine cancel out, which the ratio of two medians would keep.
pub fn paired_ratio(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "paired runs");
    median(a.iter().zip(b).map(|(a, b)| a / b).collect())
}

/// A distribution-free 95% confidence interval for the median of `xs`: the order statistics
/// that a Binomial(n, 1/2) count of values below the true median stays within, by the normal
/// approximation (fine from about 10 samples). `None` for fewer than 6, where it is unbounded.
pub fn median_ci95(mut xs: Vec<f64>) -> Option<(f64, f64)> {
    let n = xs.len();
    let half_width = 1.96 * (n as f64).sqrt() / 2.0;
    let k = (n as f64 / 2.0 - half_width).floor();
    if k < 1.0 {
        return None;
    }
    xs.sort_by(f64::total_cmp);
    let k = k as usize;
    Some((xs[k - 1], xs[n - k]))
}

/// CPU time of this whole process in seconds (every thread): the clock for in-process timings,
/// since it does not run while other processes hold the cores.
pub fn process_cpu() -> f64 {
    // SAFETY: an all-zero timespec is valid for clock_gettime to overwrite.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime: {}", std::io::Error::last_os_error());
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}
