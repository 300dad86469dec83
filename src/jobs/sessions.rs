//! The operator dashboard's signed-in sessions: kept in Redis, so signing out ends a session
//! everywhere its cookie was copied to.

use super::error::JobError;
use super::keys::Keys;

super::capability! {
    /// Dashboard sessions.
    Sessions via sessions
}

impl Sessions<'_> {
    /// Records a signed-in session for `ttl_secs`.
    pub async fn open_session(&self, id: &str, ttl_secs: u64) -> Result<(), JobError> {
        redis::cmd("SET")
            .arg(Keys::dashboard_session(id))
            .arg(1)
            .arg("EX")
            .arg(ttl_secs)
            .query_async::<()>(&mut self.conn().await?)
            .await?;
        Ok(())
    }

    /// Whether a session is still signed in (not signed out, not expired).
    pub async fn session_open(&self, id: &str) -> Result<bool, JobError> {
        let n: i64 = redis::cmd("EXISTS")
            .arg(Keys::dashboard_session(id))
            .query_async(&mut self.conn().await?)
            .await?;
        Ok(n == 1)
    }

    /// Signs a session out: its cookie is refused from now on, wherever it was copied to.
    pub async fn close_session(&self, id: &str) -> Result<(), JobError> {
        redis::cmd("DEL")
            .arg(Keys::dashboard_session(id))
            .query_async::<()>(&mut self.conn().await?)
            .await?;
        Ok(())
    }
}
