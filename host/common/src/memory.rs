//! How much memory this process has used: what a run records beside its
//! budget.

/// The most this process has had resident since it started (Linux's
/// `VmHWM`, in bytes), or `None` where the system does not say.
pub fn peak_resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib = status.lines().find_map(|line| line.strip_prefix("VmHWM:"))?;
    kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kib| kib << 10)
}

/// Gives the memory freed so far back to the system now rather than over
/// the next seconds: jemalloc (the allocator under polars-ooc, the host's)
/// keeps freed pages a while for reuse, and a stage that follows one which
/// freed a lot would otherwise stack its own on them. Where polars-ooc picks
/// mimalloc instead (not Unix), or without the `jemalloc` feature, nothing.
#[cfg(all(feature = "jemalloc", unix, not(target_os = "emscripten")))]
pub fn release_freed() {
    // "arena.<MALLCTL_ARENAS_ALL>.purge": every arena.
    let name = c"arena.4096.purge";
    // SAFETY: a documented control that reads and writes nothing.
    let status = unsafe {
        tikv_jemalloc_sys::mallctl(name.as_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut(), 0)
    };
    if status != 0 {
        tracing::debug!("jemalloc did not purge its arenas (error {status})");
    }
}

/// Where the allocator is not jemalloc: nothing to purge.
#[cfg(not(all(feature = "jemalloc", unix, not(target_os = "emscripten"))))]
pub fn release_freed() {}

/// `bytes` for people: `1.4 GiB` from a GiB up, `512 MiB` from a MiB up,
/// `12.5 KiB` below (never a size shown as 0 that is not).
pub fn size_text(bytes: u64) -> String {
    let gib = bytes as f64 / f64::from(1u32 << 30);
    if gib >= 1.0 {
        format!("{gib:.1} GiB")
    } else if bytes >= 1 << 20 {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(size_text(3 << 29), "1.5 GiB");
        assert_eq!(size_text(512 << 20), "512 MiB");
        assert_eq!(size_text(12_800), "12.5 KiB");
        assert_eq!(size_text(0), "0.0 KiB");
    }

    #[test]
    fn the_peak_is_at_least_what_was_touched() {
        let before = peak_resident_bytes().expect("Linux says VmHWM");
        let touched = vec![1u8; 64 << 20];
        let after = peak_resident_bytes().expect("Linux says VmHWM");
        assert!(after >= before.max(64 << 20), "{after} after touching {} bytes", touched.len());
    }

    #[test]
    fn sizes_read_in_mib_below_a_gib_and_in_gib_above() {
        assert_eq!(size_text(512 << 20), "512 MiB");
        assert_eq!(size_text(3 << 29), "1.5 GiB");
    }
}
