//! Runs compare/python/mp_bench.py for one round and parses its JSON.

use crate::Plan;

/// The script's path (beside this crate's sources).
pub const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/python/mp_bench.py");

/// Runs the script with counts scaled to `plan`; its JSON figures or why
/// not.
pub fn run(plan: &Plan) -> Result<serde_json::Value, String> {
    let (tp_bytes, tp_max, rt, nxn_total, lock, dict_ops) = if plan.quick {
        (4u64 << 20, 5_000u64, 1_000, 5_000, 10_000, 500)
    } else {
        (16 << 20, 50_000, 10_000, 50_000, 100_000, 5_000)
    };
    let tp: Vec<(usize, u64)> = plan
        .sizes
        .iter()
        .map(|&s| (s, (tp_bytes / s as u64).clamp(200, tp_max)))
        .collect();
    let cfg = serde_json::json!({
        "tp": tp,
        "int_count": tp_max,
        "rt": rt,
        "nxn": plan.nxn,
        "nxn_total": nxn_total,
        "lock_iters": lock,
        "dict_keys": plan.dict_keys,
        "dict_ops": dict_ops,
        "workers": plan.pool_workers,
        "pool_tasks": if plan.quick { 1_000 } else { plan.pool_tasks },
        "pool_rounds": if plan.quick { 100 } else { plan.pool_rounds },
    });
    let out = std::process::Command::new("python3")
        .arg(SCRIPT)
        .arg(cfg.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{SCRIPT} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("bad JSON from {SCRIPT}: {e}"))
}
