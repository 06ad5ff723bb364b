//! A shared `Value` and `Array` (the Python docs' `Value('d', 0.0)` /
//! `Array('i', range(10))` program): the child writes pi and negates the
//! array; the parent sees both.
//!
//! Run: `cargo run --release --example shared_value_array`

use shmkit::process::{Process, Shared};
use shmkit::{ShmArray, ShmBox, ShmValue};

type Args = (Shared<ShmBox<ShmValue<f64>>>, Shared<ShmArray<i32>>);

// The seed stores this literal (not `PI`), and the output shows it.
#[allow(clippy::approx_constant)]
fn f((n, a): Args) -> Result<(), shmkit::AttachError> {
    let (n, a) = (n.attach()?, a.attach()?);
    n.store(3.1415927);
    let mut a = a.lock().unwrap_or_else(|died| died.into_inner());
    for x in a.iter_mut() {
        *x = -*x;
    }
    Ok(())
}

shmkit::entry! { static F: Entry<Args> = f; }

fn main() -> Result<(), Box<dyn std::error::Error>> {
    shmkit::process::init();
    let num = ShmBox::<ShmValue<f64>>::anonymous(0.0)?;
    let arr = ShmArray::<i32>::anonymous_from(&(0..10).collect::<Vec<_>>())?;
    let p = Process::builder().spawn(&F, &(Shared::new(&num)?, Shared::new(&arr)?))?;
    p.join()?;
    println!("{}", num.load());
    println!("{:?}", arr.to_vec());
    Ok(())
}
