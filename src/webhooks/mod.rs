//! Provider verification and event → job translation for the ingress endpoints. Pure
//! functions: the HTTP layer feeds them bytes and headers and enqueues what they return.

pub mod twilio;
pub mod whatsapp;
