//! Twilio Media Streams: the protocol, one call's session (recording its tracks), and the
//! registry of live calls. The WebSocket itself is served by `http::calls`.

pub mod disk;
pub mod recorder;
pub mod registry;
pub mod session;
