//! Background jobs as the domain sees them: where one stands.

crate::coded! {
    /// Where a background job (a bulk issue, an import) stands: `Queued` until a process claims
    /// it, `Running` under a lease, then `Done`, or `Failed` (what it could not do is in its
    /// report).
    pub enum JobStatus {
        Queued = "queued",
        Running = "running",
        Done = "done",
        Failed = "failed",
    }
}
