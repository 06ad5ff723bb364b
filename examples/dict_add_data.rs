//! Seed 001-7: port of the seed's `add_data(p_dict, key, value)` example: two processes
//! each put one entry into a shared dict; the parent prints the dict.
//! Prints `{'number1': 25, 'number2': 30}`.
//!
//! Run: `cargo run --release --example dict_add_data`

use shmkit::process;
use shmkit::{DictConfig, ShmDict, ShmMap};

fn add_data(p_dict: &ShmMap<String, i32>, key: &str, value: i32) {
    p_dict.insert(&key.to_string(), &value).unwrap();
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    let progress_dict: ShmMap<String, i32> =
        ShmMap::new(ShmDict::anonymous(DictConfig::new(16, 4096))?);
    let first = process::fork(|| add_data(&progress_dict, "number1", 25))?;
    let second = process::fork(|| add_data(&progress_dict, "number2", 30))?;
    for child in [first, second] {
        let status = child.join()?;
        assert!(status.success(), "child failed: {status}");
    }
    let mut entries = progress_dict.to_vec()?;
    entries.sort();
    let body: Vec<String> = entries.iter().map(|(k, v)| format!("'{k}': {v}")).collect();
    println!("{{{}}}", body.join(", "));
    Ok(())
}
