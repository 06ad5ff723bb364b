//! Runs the dict examples that port seed programs and checks the shared
//! dict's final contents.

mod common;

use common::run_example;

/// 003-3: ten read-modify-writes under a shared lock, none lost.
#[test]
fn manager_dict_with_lock_ends_at_90() {
    assert_eq!(run_example("manager_dict", &[]).stdout.trim(), "90");
}

/// Not a seed program: the same with the dict's atomic `update`.
#[test]
fn dict_update_without_lock_ends_at_90() {
    assert_eq!(run_example("dict_update", &[]).stdout.trim(), "90");
}

/// 001-7: both children's entries are in the dict.
#[test]
fn add_data_prints_both_entries() {
    assert_eq!(
        run_example("dict_add_data", &[]).stdout.trim(),
        "{'number1': 25, 'number2': 30}"
    );
}
