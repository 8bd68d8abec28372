//! Faults that tests inject at named points, to prove what the host does
//! when a step fails there. Compiled in only with the `fault-injection`
//! feature, which the test suite turns on; other builds have none and every
//! check is a no-op.
//!
//! A run with `MEDALLION_FAULT=<point>[,<point>...]` meets the fault at each
//! point named.

/// Whether the fault at `point` is asked for.
fn asked_for(point: &str) -> bool {
    cfg!(feature = "fault-injection")
        && std::env::var("MEDALLION_FAULT").is_ok_and(|points| points.split(',').any(|p| p.trim() == point))
}

/// An error at `point`, if a test asked for one.
pub fn fail_at(point: &str) -> Result<(), String> {
    if asked_for(point) { Err(format!("injected fault at `{point}` (MEDALLION_FAULT)")) } else { Ok(()) }
}

/// A panic at `point`, if a test asked for one.
pub fn panic_at(point: &str) {
    if asked_for(point) {
        panic!("injected panic at `{point}` (MEDALLION_FAULT)");
    }
}
