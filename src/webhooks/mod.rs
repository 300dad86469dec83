//! Provider verification and event → job translation for the ingress endpoints, one home per
//! provider: `whatsapp` (the Baileys bridge), `twilio` (callbacks, the voice webhook's stream
//! rules), `push` (the push API). Pure functions: the HTTP layer feeds them bytes and headers
//! and enqueues what they return.

use crate::jobs::NewJob;

pub mod push;
pub mod twilio;
pub mod whatsapp;

/// A provider event as the job it becomes, under its de-dupe key.
#[derive(Debug)]
pub struct Event {
    pub job: NewJob,
    pub dedupe_key: String,
}
