//! Random operation sequences against a `HashMap` model: every result must
//! match, and the dict must verify at the end.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use shmkit::{DictConfig, DictError, ShmDict};

fuzz_target!(|data: &[u8]| {
    // Tiny capacity so CapacityExceeded, rehash and block splits happen.
    let d = ShmDict::in_heap(DictConfig::new(24, 2048).stripes(2)).unwrap();
    let mut m: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut it = data.chunks(3);
    while let Some(c) = it.next() {
        let (op, k, n) = (c[0], c.get(1).copied().unwrap_or(0), c.get(2).copied().unwrap_or(0));
        let key = vec![k; 1 + (k as usize % 5)];
        let val = vec![n; n as usize % 70];
        match op % 6 {
            0 => match d.insert(&key, &val) {
                Ok(old) => assert_eq!(old, m.insert(key, val)),
                Err(DictError::CapacityExceeded) => {}
                Err(e) => panic!("insert: {e}"),
            },
            1 => assert_eq!(d.get(&key).unwrap(), m.get(&key).cloned()),
            2 => assert_eq!(d.remove(&key).unwrap(), m.remove(&key)),
            3 => {
                let want = (n % 2 == 0).then(|| val.clone());
                match d.update(&key, |_| want.clone()) {
                    Ok(_) => match want {
                        Some(v) => {
                            m.insert(key, v);
                        }
                        None => {
                            m.remove(&key);
                        }
                    },
                    Err(DictError::CapacityExceeded) => {}
                    Err(e) => panic!("update: {e}"),
                }
            }
            4 => assert_eq!(d.len(), m.len()),
            _ => {
                if n == 0 {
                    d.clear().unwrap();
                    m.clear();
                }
            }
        }
    }
    assert_eq!(d.verify().unwrap(), m.len());
    for (k, v) in &m {
        assert_eq!(d.get(k).unwrap().as_ref(), Some(v));
    }
});
