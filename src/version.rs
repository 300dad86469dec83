//! Which build this is: the release version (Cargo.toml) and the commit it was built from
//! (embedded by `build.rs`), so an operator sees which version each process of a mixed fleet
//! runs during a deploy.

/// The release version, `MAJOR.MINOR.PATCH` (with `-dev` between releases).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The commit the binary was built from (7 hex digits), or `unknown`.
pub const COMMIT: &str = env!("PROSAAS_COMMIT");

/// `0.2.0 (commit 1a2b3c4)`: what `prosaas --version` prints after the name.
pub const DESCRIBE: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PROSAAS_COMMIT"),
    ")"
);
