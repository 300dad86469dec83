//! Built-in job types, one file each. Each registers itself into a [`crate::worker::handler::Registry`].

pub mod diag;
