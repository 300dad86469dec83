//! The diagnostic job type's execution counter.

use std::collections::BTreeMap;

use super::error::JobError;
use super::keys::Keys;

super::capability! {
    /// The diagnostic job type's execution counter, which tests and the bench read to prove
    /// exactly-once execution; nothing in production reads it.
    Diag via diag
}

impl Diag<'_> {
    /// Counts an execution of `job_id` (the diagnostic `diag.count` job type uses it to prove
    /// exactly-once execution in tests and benchmarks).
    pub async fn count_execution(&self, job_id: &str) -> Result<u64, JobError> {
        Ok(redis::cmd("HINCRBY")
            .arg(Keys::diag_executions())
            .arg(job_id)
            .arg(1)
            .query_async(&mut self.conn().await?)
            .await?)
    }

    /// Every execution counted by [`Diag::count_execution`], by job id.
    pub async fn execution_counts(&self) -> Result<BTreeMap<String, u64>, JobError> {
        Ok(redis::cmd("HGETALL")
            .arg(Keys::diag_executions())
            .query_async(&mut self.conn().await?)
            .await?)
    }
}
