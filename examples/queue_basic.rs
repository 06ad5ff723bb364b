//! Seed 004-11: port of the seed's basic `multiprocessing.Queue` example: a child puts
//! `[42, None, 'hello']`, the parent gets and prints it.
//!
//! Run: `cargo run --release --example queue_basic`

use serde::{Deserialize, Serialize};
use shmkit::process;
use shmkit::queue::Queue;

/// A Python-ish dynamic value.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
enum Value {
    Int(i64),
    None,
    Str(String),
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::None => write!(f, "None"),
            Value::Str(s) => write!(f, "'{s}'"),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    process::init();
    // Python's `Queue()`: no sizes to choose.
    let q = Queue::<Vec<Value>>::new()?;
    let child = process::fork(|| {
        q.put(vec![
            Value::Int(42),
            Value::None,
            Value::Str("hello".into()),
        ])
    })?;
    let got = q.get()?;
    let items: Vec<String> = got.iter().map(ToString::to_string).collect();
    println!("[{}]", items.join(", ")); // prints "[42, None, 'hello']"
    let status = child.join()?;
    assert!(status.success(), "child failed: {status}");
    Ok(())
}
