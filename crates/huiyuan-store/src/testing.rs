//! What the backends' test support shares: telling which test processes have ended, so that the
//! databases and files each test process makes can be removed by the ones after it.
//!
//! Under nextest every test is a process of its own and CI runs the whole suite eight times (once
//! per clock start), so a database or file per test that nobody removes fills the disk within a
//! few runs. Removing them in the test that made them is not enough: a panicking or killed test
//! never gets there. Instead each is named by its process id, and a test that makes one first
//! removes those whose process has ended.

/// Whether the process `pid` has ended. Where processes cannot be looked up (no `/proc`),
/// none counts as ended, so nothing is removed.
pub fn process_has_ended(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    proc.is_dir() && !proc.join(pid.to_string()).exists()
}
