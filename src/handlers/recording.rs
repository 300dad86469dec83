//! `recording_job(call_sid, path | paths | recording_url)`: finalizes a call recording.
//!
//! The calls role writes μ-law WAV files while a call runs. This job validates each file,
//! converts μ-law to 16-bit PCM WAV (`<name>.pcm.wav`, written to a temporary file and renamed,
//! so a re-run after a crash finds either nothing or a complete file), and returns each file's
//! duration and format. Paths are relative to `recordings.dir` and may not leave it, through
//! `..` or through a symlink. With `recording_url` (Twilio's own recording), the WAV is downloaded
//! into `recordings.dir` first: only from an allowed host over https, with Twilio's basic auth,
//! streamed to a temporary file under a size cap and renamed into place only when complete.

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::audio::{self, FORMAT_MULAW, FORMAT_PCM, WavFormat};
use crate::worker::handler::{
    HandlerContext, HandlerError, HandlerResult, JobInput, RecordingAccess,
};

/// Redirects a download may follow (each hop checked against the allow-list).
const MAX_REDIRECTS: usize = 5;

pub async fn recording_job(ctx: HandlerContext, input: JobInput) -> HandlerResult {
    let call_sid = input.str_arg("call_sid")?.to_owned();
    if !crate::webhooks::twilio::is_valid_call_sid(&call_sid) {
        return Err(HandlerError::Permanent(format!(
            "invalid call_sid {call_sid:?}"
        )));
    }
    let dir = ctx.recordings.dir.clone();
    let mut files: Vec<PathBuf> = Vec::new();
    if let Some(p) = input.kwargs.get("path").and_then(Value::as_str) {
        files.push(inside(&dir, p)?);
    }
    if let Some(Value::Array(ps)) = input.kwargs.get("paths") {
        for p in ps {
            let p = p
                .as_str()
                .ok_or_else(|| HandlerError::Permanent("paths must be a list of strings".into()))?;
            files.push(inside(&dir, p)?);
        }
    }
    if let Some(url) = input.kwargs.get("recording_url").and_then(Value::as_str) {
        files.push(download(&ctx.recordings, url, &call_sid).await?);
    }
    if files.is_empty() {
        return Err(HandlerError::Permanent(
            "one of path, paths or recording_url is required".into(),
        ));
    }
    // Decoding and rewriting audio is CPU and disk work: keep it off the async threads.
    let results = tokio::task::spawn_blocking(move || {
        files
            .iter()
            .map(|f| confined(&dir, f).and_then(|f| finalize(&f)))
            .collect::<Result<Vec<Value>, HandlerError>>()
    })
    .await
    .map_err(|e| HandlerError::Retryable(format!("recording task failed: {e}")))??;
    let duration = results
        .iter()
        .filter_map(|r| r["duration_secs"].as_f64())
        .fold(0.0, f64::max);
    Ok(Some(
        json!({"call_sid": call_sid, "duration_secs": duration, "files": results}),
    ))
}

/// `rel` resolved under `dir`; absolute paths and `..` are refused.
fn inside(dir: &Path, rel: &str) -> Result<PathBuf, HandlerError> {
    let p = Path::new(rel);
    let safe = p.components().all(|c| matches!(c, Component::Normal(_)));
    if rel.is_empty() || !safe {
        return Err(HandlerError::Permanent(format!(
            "recording path {rel:?} must be relative to the recordings directory, without '..'"
        )));
    }
    Ok(dir.join(p))
}

/// `path` with its symlinks resolved, if that stays inside `dir` (itself resolved): a link in
/// the recordings directory must not lead the job to read or overwrite a file elsewhere.
fn confined(dir: &Path, path: &Path) -> Result<PathBuf, HandlerError> {
    let root = dir.canonicalize().map_err(|e| {
        HandlerError::Retryable(format!("recordings directory {}: {e}", dir.display()))
    })?;
    let real = match path.canonicalize() {
        Ok(real) => real,
        // A missing file will not appear by retrying: the calls role writes it before enqueueing.
        Err(e) => {
            return Err(HandlerError::Permanent(format!(
                "cannot open {}: {e}",
                path.display()
            )));
        }
    };
    if real.starts_with(&root) {
        Ok(real)
    } else {
        Err(HandlerError::Permanent(format!(
            "{} leads outside the recordings directory",
            path.display()
        )))
    }
}

fn finalize(path: &Path) -> Result<Value, HandlerError> {
    let file = std::fs::File::open(path).map_err(|e| {
        // A missing file will not appear by retrying: the calls role writes it before enqueueing.
        HandlerError::Permanent(format!("cannot open {}: {e}", path.display()))
    })?;
    let wav = audio::read_wav(std::io::BufReader::new(file)).map_err(|e| {
        HandlerError::Permanent(format!("{} is not a valid WAV: {e}", path.display()))
    })?;
    let f = wav.format;
    let (out, out_format) = match (f.format, f.bits_per_sample) {
        (FORMAT_MULAW, 8) => {
            let out = path.with_extension("pcm.wav");
            let pcm = audio::ulaw_to_pcm16(&wav.data);
            let fmt = WavFormat {
                format: FORMAT_PCM,
                bits_per_sample: 16,
                ..f
            };
            write_atomically(&out, fmt, &pcm)?;
            (out, fmt)
        }
        (FORMAT_PCM, 16) => (path.to_path_buf(), f),
        _ => {
            return Err(HandlerError::Permanent(format!(
                "{}: unsupported WAV format {} with {} bits per sample",
                path.display(),
                f.format,
                f.bits_per_sample
            )));
        }
    };
    Ok(json!({
        "source": path.display().to_string(),
        "path": out.display().to_string(),
        "duration_secs": wav.duration_secs(),
        "frames": wav.frames(),
        "sample_rate": out_format.sample_rate,
        "channels": out_format.channels,
        "format": "pcm_s16le",
    }))
}

fn write_atomically(out: &Path, fmt: WavFormat, data: &[u8]) -> Result<(), HandlerError> {
    let tmp = out.with_extension("wav.tmp");
    let io =
        |e: std::io::Error| HandlerError::Retryable(format!("cannot write {}: {e}", out.display()));
    // A stale temporary file (or a planted link) is removed, never written through: create_new
    // does not follow a link, and the rename replaces whatever sits at `out` instead of writing
    // into it.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    let written = audio::write_wav(&mut w, fmt, data)
        .and_then(|()| w.into_inner().map_err(std::io::IntoInnerError::into_error))
        .and_then(|file| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    std::fs::rename(&tmp, out).map_err(io)
}

/// The download client: no redirects of its own (each hop is checked here), bounded times.
fn client() -> Result<&'static reqwest::Client, HandlerError> {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    if let Some(c) = CLIENT.get() {
        return Ok(c);
    }
    let built = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| HandlerError::Retryable(format!("cannot build the download client: {e}")))?;
    Ok(CLIENT.get_or_init(|| built))
}

/// Whether `host` is on the allow-list (`*.domain` matches its subdomains, not itself).
fn host_allowed(allowed: &[String], host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    allowed.iter().any(|a| {
        let a = a.to_ascii_lowercase();
        match a.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
            None => host == a,
        }
    })
}

fn checked_url(access: &RecordingAccess, url: &str) -> Result<reqwest::Url, HandlerError> {
    let refuse = |why: &str| HandlerError::Permanent(format!("recording_url {url:?} {why}"));
    let parsed = reqwest::Url::parse(url).map_err(|_| refuse("is not a URL"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if access.allow_http => {}
        _ => return Err(refuse("is not https")),
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(refuse("carries credentials"));
    }
    match parsed.host_str() {
        Some(host) if host_allowed(&access.allowed_hosts, host) => Ok(parsed),
        _ => Err(refuse("names a host outside recordings.allowed_hosts")),
    }
}

async fn download(
    access: &RecordingAccess,
    url: &str,
    call_sid: &str,
) -> Result<PathBuf, HandlerError> {
    let response = fetch(access, url).await?;
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(HandlerError::Retryable(format!("{url} answered {status}")));
    }
    if !status.is_success() {
        return Err(HandlerError::Permanent(format!("{url} answered {status}")));
    }
    let cap = access.max_download_bytes;
    let too_big = |n: u64| {
        HandlerError::Permanent(format!(
            "{url} is {n} bytes or more, over recordings.max_download_bytes ({cap})"
        ))
    };
    if let Some(n) = response.content_length().filter(|&n| n > cap) {
        return Err(too_big(n));
    }
    let dir = &access.dir;
    let path = dir.join(format!("{call_sid}.twilio.wav"));
    let write = |e: std::io::Error| {
        HandlerError::Retryable(format!("cannot store {}: {e}", path.display()))
    };
    tokio::fs::create_dir_all(dir).await.map_err(write)?;
    // A unique temporary name, created new: it cannot be a planted link, and two attempts of
    // the same job never write into one file.
    let tmp = dir.join(format!(
        ".{call_sid}.{}.download",
        uuid::Uuid::new_v4().simple()
    ));
    let result = stream_to(response, &tmp, cap, too_big).await;
    let result = match result {
        Ok(()) => tokio::fs::rename(&tmp, &path).await.map_err(write),
        Err(e) => Err(e),
    };
    if result.is_err() {
        let _ = tokio::fs::remove_file(&tmp).await;
    }
    result.map(|()| path)
}

/// GETs `url`, following redirects only to allowed hosts, with credentials only for the host
/// the job named.
async fn fetch(access: &RecordingAccess, url: &str) -> Result<reqwest::Response, HandlerError> {
    let mut current = checked_url(access, url)?;
    let origin = current.host_str().map(str::to_owned);
    let client = client()?;
    let mut hops = 0;
    let response = loop {
        let mut request = client.get(current.clone());
        // Credentials go only to the host the job named, never to a redirect's other host.
        if let Some((user, token)) = &access.basic_auth
            && current.host_str().map(str::to_owned) == origin
        {
            request = request.basic_auth(user, Some(token));
        }
        let response = request
            .send()
            .await
            .map_err(|e| HandlerError::Retryable(format!("cannot download {current}: {e}")))?;
        if !response.status().is_redirection() {
            break response;
        }
        hops += 1;
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| current.join(l).ok())
            .ok_or_else(|| {
                HandlerError::Permanent(format!("{current} redirected without a usable Location"))
            })?;
        if hops > MAX_REDIRECTS {
            return Err(HandlerError::Permanent(format!(
                "{url} redirected more than {MAX_REDIRECTS} times"
            )));
        }
        current = checked_url(access, location.as_str())?;
    };
    Ok(response)
}

/// Writes the body to a new file at `tmp`, failing past `cap` bytes.
async fn stream_to(
    mut response: reqwest::Response,
    tmp: &Path,
    cap: u64,
    too_big: impl Fn(u64) -> HandlerError,
) -> Result<(), HandlerError> {
    let io =
        |e: std::io::Error| HandlerError::Retryable(format!("cannot write {}: {e}", tmp.display()));
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .await
        .map_err(io)?;
    let mut written: u64 = 0;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| HandlerError::Retryable(format!("the download broke off: {e}")))?
    {
        written += chunk.len() as u64;
        if written > cap {
            return Err(too_big(written));
        }
        file.write_all(&chunk).await.map_err(io)?;
    }
    file.flush().await.map_err(io)?;
    file.sync_all().await.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_recordings_dir() {
        let d = Path::new("/rec");
        assert_eq!(inside(d, "CA1.wav").unwrap(), Path::new("/rec/CA1.wav"));
        assert_eq!(
            inside(d, "calls/CA1.wav").unwrap(),
            Path::new("/rec/calls/CA1.wav")
        );
        for bad in ["/etc/passwd", "../x.wav", "a/../../b", ""] {
            assert!(inside(d, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_allowed_https_hosts_are_fetched() {
        let mut access = RecordingAccess::local(PathBuf::from("/rec"));
        access.allowed_hosts = vec!["api.twilio.com".into(), "*.twilio.com".into()];
        for ok in [
            "https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1",
            "https://API.Twilio.com/x",
            "https://api.dublin.ie1.twilio.com/x",
        ] {
            assert!(checked_url(&access, ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://api.twilio.com/x",
            "https://twilio.com.evil.example/x",
            "https://eviltwilio.com/x",
            "https://127.0.0.1:8080/metrics",
            "https://user:pw@api.twilio.com/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(checked_url(&access, bad).is_err(), "{bad}");
        }
        access.allow_http = true;
        assert!(checked_url(&access, "http://api.twilio.com/x").is_ok());
    }

    #[test]
    fn links_out_of_the_recordings_dir_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("rec");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(root.path().join("secret.wav"), b"x").unwrap();
        std::fs::write(dir.join("ok.wav"), b"x").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret.wav"), dir.join("link.wav")).unwrap();
        assert!(confined(&dir, &dir.join("ok.wav")).is_ok());
        let e = confined(&dir, &dir.join("link.wav")).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
    }
}
