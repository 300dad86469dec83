//! `recording_job(call_sid, path | paths | recording_url)`: finalizes a call recording.
//!
//! The calls role writes μ-law WAV files while a call runs. This job validates each file,
//! converts μ-law to 16-bit PCM WAV (`<name>.pcm.wav`, written to a temporary file and renamed,
//! so a re-run after a crash finds either nothing or a complete file), and returns each file's
//! duration and format. Paths are relative to `recordings.dir` and may not leave it. With
//! `recording_url` (Twilio's own recording), the WAV is downloaded into `recordings.dir` first.

use std::path::{Component, Path, PathBuf};

use serde_json::{Value, json};

use crate::audio::{self, FORMAT_MULAW, FORMAT_PCM, WavFormat};
use crate::worker::handler::{HandlerContext, HandlerError, HandlerResult, JobInput};

pub async fn recording_job(ctx: HandlerContext, input: JobInput) -> HandlerResult {
    let call_sid = input.str_arg("call_sid")?.to_owned();
    if call_sid.is_empty() || !call_sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(HandlerError::Permanent(format!(
            "invalid call_sid {call_sid:?}"
        )));
    }
    let dir = ctx.recordings_dir.as_ref().clone();
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
        files.push(download(&ctx, url, &dir, &call_sid).await?);
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
            .map(|f| finalize(f))
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
    let file = std::fs::File::create(&tmp).map_err(io)?;
    let mut w = std::io::BufWriter::new(file);
    audio::write_wav(&mut w, fmt, data).map_err(io)?;
    let file = w.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, out).map_err(io)
}

async fn download(
    ctx: &HandlerContext,
    url: &str,
    dir: &Path,
    call_sid: &str,
) -> Result<PathBuf, HandlerError> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(HandlerError::Permanent(format!(
            "recording_url {url:?} is not an HTTP URL"
        )));
    }
    let response = ctx
        .delivery
        .client()
        .get(url)
        .send()
        .await
        .map_err(|e| HandlerError::Retryable(format!("cannot download {url}: {e}")))?;
    let status = response.status();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(HandlerError::Retryable(format!("{url} answered {status}")));
    }
    if !status.is_success() {
        return Err(HandlerError::Permanent(format!("{url} answered {status}")));
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|e| HandlerError::Retryable(format!("download of {url} broke off: {e}")))?;
    let path = dir.join(format!("{call_sid}.twilio.wav"));
    let write = |e: std::io::Error| {
        HandlerError::Retryable(format!("cannot store {}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(write)?;
    let tmp = path.with_extension("wav.tmp");
    std::fs::write(&tmp, &bytes).map_err(write)?;
    std::fs::rename(&tmp, &path).map_err(write)?;
    Ok(path)
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
}
