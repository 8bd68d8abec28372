//! Faults that tests inject at named points, to prove what the host does
//! when a step fails there. Compiled in only with the `fault-injection`
//! feature, which the test suite turns on; other builds have none and every
//! check is a no-op.
//!
//! A run with `MEDALLION_FAULT=<point>[,<point>...]` meets the fault at each
//! point named.
//!
//! A run with `MEDALLION_PAUSE=<dir>` stops at each point named in
//! `MEDALLION_FAULT` that calls [`pause_at`]: it writes `<dir>/<point>.reached`
//! and waits until the test creates `<dir>/<point>.go` (or kills it). Tests
//! then act at a known moment instead of guessing one with sleeps.

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

/// Waits at `point`, if a test asked for a pause there (see the module's
/// documentation): says it is there, then waits for the test's go-ahead.
pub fn pause_at(point: &str) {
    if !asked_for(point) {
        return;
    }
    let Some(dir) = std::env::var_os("MEDALLION_PAUSE").map(std::path::PathBuf::from) else { return };
    let go = dir.join(format!("{point}.go"));
    let reached = dir.join(format!("{point}.reached"));
    // Written aside, then renamed: the test never reads half a file.
    let aside = dir.join(format!("{point}.reached.{}", std::process::id()));
    if std::fs::write(&aside, std::process::id().to_string()).and_then(|()| std::fs::rename(&aside, &reached)).is_err()
    {
        return;
    }
    while !go.exists() {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
