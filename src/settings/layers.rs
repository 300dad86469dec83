//! The layers settings are read from, later wins: `config/default.toml` (compiled in) → an
//! overlay file (`--config FILE`, or `config/$APP_ENV.toml`) → `PROSAAS__SECTION__KEY`
//! variables → the conventional `REDIS_URL`, `PORT` and secrets. The environment is passed in
//! as a map so tests never mutate the process's own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use config::builder::{ConfigBuilder, DefaultState};
use config::{Config, Environment, File, FileFormat};

const DEFAULTS: &str = include_str!("../../config/default.toml");

/// Settings that are lists, and the variables that set them (comma-separated).
const LIST_KEYS: [(&str, &str); 5] = [
    ("PROSAAS__REDIS__SENTINEL__ADDRS", "redis.sentinel.addrs"),
    ("PROSAAS__WORKER__QUEUES", "worker.queues"),
    ("PROSAAS__WORKER__BACKOFF_SECS", "worker.backoff_secs"),
    ("PROSAAS__API__QUEUES", "api.queues"),
    (
        "PROSAAS__RECORDINGS__ALLOWED_HOSTS",
        "recordings.allowed_hosts",
    ),
];

/// Every layer, merged. `overlay` is `--config FILE`; without it `config/$APP_ENV.toml` is read
/// when `APP_ENV` is set.
pub(super) fn merged(
    overlay: Option<&Path>,
    env: &HashMap<String, String>,
) -> anyhow::Result<Config> {
    let overlay: Option<PathBuf> = match overlay {
        Some(p) => Some(p.to_path_buf()),
        None => env
            .get("APP_ENV")
            .filter(|e| !e.is_empty())
            .map(|e| PathBuf::from(format!("config/{e}.toml"))),
    };
    let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Toml));
    if let Some(path) = &overlay {
        if !path.is_file() {
            bail!("config file {} does not exist", path.display());
        }
        builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Toml));
    }
    builder = with_prosaas_env(builder, env)?;
    builder = with_plain_env(builder, env)?;
    builder.build().map_err(|e| anyhow::anyhow!("{e}"))
}

/// Adds the `PROSAAS__SECTION__KEY` variables. List settings are split here: the config crate
/// turns a one-element list from the environment (`PROSAAS__WORKER__QUEUES=default`) into a
/// scalar. A value that starts with `[` or `{` is JSON, for list and table settings a flat
/// variable cannot express (`PROSAAS__EXTERNAL='[{"job_type": "x", "queue": "python"}]'`).
fn with_prosaas_env(
    mut builder: ConfigBuilder<DefaultState>,
    env: &HashMap<String, String>,
) -> anyhow::Result<ConfigBuilder<DefaultState>> {
    let mut prosaas_env: HashMap<String, String> = HashMap::new();
    let mut lists: Vec<(String, config::Value)> = Vec::new();
    for (k, v) in env.iter().filter(|(k, _)| k.starts_with("PROSAAS__")) {
        let trimmed = v.trim_start();
        if trimmed.starts_with('[') || trimmed.starts_with('{') {
            let parsed: serde_json::Value =
                serde_json::from_str(v).with_context(|| format!("{k} is not valid JSON"))?;
            let key = k["PROSAAS__".len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            lists.push((key, json_to_config(parsed)));
            continue;
        }
        match LIST_KEYS.iter().find(|(var, _)| var == k) {
            Some((_, key)) => lists.push((
                (*key).to_owned(),
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect::<Vec<String>>()
                    .into(),
            )),
            None => {
                prosaas_env.insert(k.clone(), v.clone());
            }
        }
    }
    builder = builder.add_source(
        Environment::with_prefix("PROSAAS")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(prosaas_env)),
    );
    for (key, value) in lists {
        builder = builder.set_override(key, value)?;
    }
    Ok(builder)
}

/// Adds the conventional variables (`REDIS_URL`, `PORT`, the secrets, `RQ_KEY_PREFIX`), which
/// win over every file and `PROSAAS__` variable.
fn with_plain_env(
    mut builder: ConfigBuilder<DefaultState>,
    env: &HashMap<String, String>,
) -> anyhow::Result<ConfigBuilder<DefaultState>> {
    if let Some(url) = env.get("REDIS_URL").filter(|u| !u.is_empty()) {
        builder = builder.set_override("redis.url", url.as_str())?;
    }
    for (var, key) in [
        ("INTERNAL_SECRET", "api.internal_secret"),
        ("INTERNAL_API_TOKEN", "api.internal_api_token"),
        ("DASHBOARD_PASSWORD", "dashboard.password"),
        ("TWILIO_AUTH_TOKEN", "api.twilio_auth_token"),
        ("TWILIO_ACCOUNT_SID", "recordings.twilio_account_sid"),
        ("PUBLIC_BASE_URL", "api.public_base_url"),
        // RQ 3.0's own variable: prosaas and Python RQ must agree on the prefix.
        ("RQ_KEY_PREFIX", "redis.key_prefix"),
    ] {
        if let Some(v) = env.get(var).filter(|v| !v.is_empty()) {
            builder = builder.set_override(key, v.as_str())?;
        }
    }
    if let Some(port) = env.get("PORT").filter(|p| !p.is_empty()) {
        let port: u16 = port
            .parse()
            .with_context(|| format!("PORT={port:?} is not a port number"))?;
        builder = builder.set_override("http.port", port)?;
    }
    Ok(builder)
}

/// A JSON value as the config crate's, for settings given as JSON in the environment.
fn json_to_config(v: serde_json::Value) -> config::Value {
    use config::ValueKind;
    let kind = match v {
        serde_json::Value::Null => ValueKind::Nil,
        serde_json::Value::Bool(b) => ValueKind::Boolean(b),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => ValueKind::I64(i),
            None => n.as_u64().map_or_else(
                || ValueKind::Float(n.as_f64().unwrap_or_default()),
                ValueKind::U64,
            ),
        },
        serde_json::Value::String(s) => ValueKind::String(s),
        serde_json::Value::Array(items) => {
            ValueKind::Array(items.into_iter().map(json_to_config).collect())
        }
        serde_json::Value::Object(map) => ValueKind::Table(
            map.into_iter()
                .map(|(k, v)| (k, json_to_config(v)))
                .collect(),
        ),
    };
    config::Value::new(None, kind)
}
