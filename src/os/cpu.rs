//! How many CPUs this process may use: its affinity mask, lowered by a
//! cgroup v2 CPU quota.

use std::path::{Path, PathBuf};

/// CPUs this process may use: the `sched_getaffinity` count, lowered by a
/// cgroup v2 `cpu.max` quota on this process's cgroup or an ancestor.
/// At least 1.
pub(crate) fn available_cpus() -> usize {
    let mut n = affinity_cpus()
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    if let Some(q) = cgroup_quota() {
        n = n.min(q);
    }
    n.max(1)
}

fn affinity_cpus() -> Option<usize> {
    let set = rustix::thread::sched_getaffinity(None).ok()?;
    usize::try_from(set.count()).ok().filter(|&n| n > 0)
}

/// The tightest `cpu.max` quota (rounded up to whole CPUs) on the path
/// from this process's cgroup v2 up to the root, if any.
fn cgroup_quota() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let root = Path::new("/sys/fs/cgroup");
    let mut dir = PathBuf::from(root);
    dir.push(path.trim_start_matches('/'));
    let mut best: Option<usize> = None;
    loop {
        if let Some(cpus) = std::fs::read_to_string(dir.join("cpu.max"))
            .ok()
            .and_then(|max| quota_cpus(&max))
        {
            best = Some(best.map_or(cpus, |b| b.min(cpus)));
        }
        if dir == root || !dir.pop() {
            break;
        }
    }
    best
}

/// Whole CPUs granted by one `cpu.max` line (`"QUOTA PERIOD"`; `"max
/// PERIOD"` is no limit).
fn quota_cpus(line: &str) -> Option<usize> {
    let mut it = line.split_whitespace();
    let q = it.next()?.parse::<u64>().ok()?;
    let p = it.next()?.parse::<u64>().ok()?;
    (p > 0).then(|| q.div_ceil(p).max(1) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_lines_round_up_to_whole_cpus() {
        assert_eq!(quota_cpus("max 100000\n"), None);
        assert_eq!(quota_cpus("150000 100000\n"), Some(2));
        assert_eq!(quota_cpus("200000 100000"), Some(2));
        assert_eq!(quota_cpus("1 100000"), Some(1));
        assert_eq!(quota_cpus("100 0"), None);
        assert_eq!(quota_cpus(""), None);
    }

    #[test]
    #[cfg_attr(miri, ignore = "sched_getaffinity needs syscalls")]
    fn at_least_one_and_no_more_than_the_machine_has() {
        let n = available_cpus();
        let online = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert!(n >= 1 && n <= online.max(1024), "{n}");
    }
}
