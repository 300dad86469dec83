//! A Prometheus text-format (0.0.4) check, the rules `promtool check metrics` applies: the
//! exposition parses, every family has one `# HELP` and one `# TYPE` before its samples and its
//! samples are contiguous, no series repeats, counters end in `_total` and nothing else does,
//! names are snake_case, and each histogram has cumulative buckets ending at `+Inf`, with
//! `_count` equal to the `+Inf` bucket. Where `promtool` is installed, it runs too.

use std::collections::{HashMap, HashSet};

/// Every problem in `text`, one line each; empty when the exposition is clean.
pub fn problems(text: &str) -> Vec<String> {
    let mut check = Check::default();
    for (n, line) in text.lines().enumerate() {
        let at = |what: String| format!("line {}: {what}: {line}", n + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            check.help(rest, at);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            check.kind(rest, at);
        } else if !line.starts_with('#') {
            check.sample(line, at);
        }
    }
    check.histograms()
}

/// Histogram buckets as read: (le, value) in order.
type Buckets = Vec<(f64, f64)>;

/// What the check has read so far, and the problems found.
#[derive(Default)]
struct Check {
    out: Vec<String>,
    help: HashSet<String>,
    types: HashMap<String, String>,
    /// Families whose samples ended (another family's began after them).
    finished: HashSet<String>,
    current: Option<String>,
    series: HashSet<String>,
    /// histogram family -> labels without `le` -> (buckets, count)
    hist: HashMap<String, HashMap<String, (Buckets, Option<f64>)>>,
}

impl Check {
    fn help(&mut self, rest: &str, at: impl Fn(String) -> String) {
        let name = rest.split(' ').next().unwrap_or_default().to_owned();
        if !self.help.insert(name.clone()) {
            self.out.push(at(format!("second HELP for {name}")));
        }
        if rest.len() <= name.len() + 1 {
            self.out.push(at(format!("empty HELP for {name}")));
        }
    }

    fn kind(&mut self, rest: &str, at: impl Fn(String) -> String) {
        let mut parts = rest.split(' ');
        let name = parts.next().unwrap_or_default().to_owned();
        let kind = parts.next().unwrap_or_default().to_owned();
        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind.as_str()) {
            self.out.push(at(format!("unknown type {kind}")));
        }
        if self.types.insert(name.clone(), kind).is_some() {
            self.out.push(at(format!("second TYPE for {name}")));
        }
    }

    fn sample(&mut self, line: &str, at: impl Fn(String) -> String) {
        let Some((name, labels, value)) = parse_sample(line) else {
            self.out.push(at("unparsable sample".into()));
            return;
        };
        let family = family_of(&name, &self.types);
        if self.current.as_deref() != Some(family.as_str()) {
            if let Some(prev) = self.current.take() {
                self.finished.insert(prev);
            }
            if self.finished.contains(&family) {
                self.out
                    .push(at(format!("samples of {family} are not contiguous")));
            }
            self.current = Some(family.clone());
        }
        let Some(kind) = self.types.get(&family).cloned() else {
            self.out
                .push(at(format!("no TYPE before the samples of {family}")));
            return;
        };
        self.naming(&family, &kind, &at);
        let mut sorted = labels.clone();
        sorted.sort();
        if !self.series.insert(format!("{name}{sorted:?}")) {
            self.out.push(at("duplicate series".into()));
        }
        if kind == "histogram" {
            let key: Vec<&(String, String)> = sorted.iter().filter(|(k, _)| k != "le").collect();
            let entry = self
                .hist
                .entry(family.clone())
                .or_default()
                .entry(format!("{key:?}"))
                .or_default();
            if name.ends_with("_bucket") {
                match labels
                    .iter()
                    .find(|(k, _)| k == "le")
                    .map(|(_, v)| parse_value(v))
                {
                    Some(Some(le)) => entry.0.push((le, value)),
                    _ => self.out.push(at("bucket without a numeric le".into())),
                }
            } else if name.ends_with("_count") {
                entry.1 = Some(value);
            }
        }
    }

    /// HELP present, snake_case, and `_total` on counters only.
    fn naming(&mut self, family: &str, kind: &str, at: &impl Fn(String) -> String) {
        if !self.help.contains(family) {
            self.out.push(at(format!("no HELP for {family}")));
        }
        if family.bytes().any(|b| b.is_ascii_uppercase()) {
            self.out.push(at(format!("{family} is not snake_case")));
        }
        match kind {
            "counter" if !family.ends_with("_total") => self
                .out
                .push(at(format!("counter {family} should end in _total"))),
            k if k != "counter" && family.ends_with("_total") => self
                .out
                .push(at(format!("non-counter {family} should not end in _total"))),
            _ => {}
        }
    }

    /// Each histogram's buckets ascend, are cumulative and end at `+Inf` equal to `_count`.
    fn histograms(mut self) -> Vec<String> {
        for (family, by_labels) in self.hist {
            for (labels, (buckets, count)) in by_labels {
                let ordered = buckets
                    .windows(2)
                    .all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
                if !ordered {
                    self.out.push(format!(
                        "{family}{labels}: buckets not ascending and cumulative"
                    ));
                }
                match (buckets.last().copied(), count) {
                    (Some((le, v)), Some(c)) if le.is_infinite() && v == c => {}
                    _ => self
                        .out
                        .push(format!("{family}{labels}: no +Inf bucket equal to _count")),
                }
            }
        }
        self.out
    }
}

/// Runs `promtool check metrics` over `text` when promtool is on PATH; `None` when it is not.
pub fn promtool(text: &str) -> Option<Result<(), String>> {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .ok()?;
    child.stdin.take()?.write_all(text.as_bytes()).ok()?;
    let out = child.wait_with_output().ok()?;
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    })
}

/// `GET url`'s exposition text, checked with [`assert_clean`].
pub async fn scrape_clean(http: &reqwest::Client, url: String) -> String {
    let text = http.get(url).send().await.unwrap().text().await.unwrap();
    assert_clean(&text);
    text
}

/// Asserts that `text` passes the check (and promtool, where installed).
pub fn assert_clean(text: &str) {
    let found = problems(text);
    assert!(found.is_empty(), "{}\n---\n{text}", found.join("\n"));
    if let Some(Err(e)) = promtool(text) {
        panic!("promtool check metrics: {e}\n---\n{text}");
    }
}

fn family_of(name: &str, types: &HashMap<String, String>) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix)
            && types
                .get(base)
                .is_some_and(|k| k == "histogram" || k == "summary")
        {
            return base.to_owned();
        }
    }
    name.to_owned()
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

fn valid_name(s: &str, colon: bool) -> bool {
    let mut bytes = s.bytes();
    let ok_first = |b: u8| b.is_ascii_alphabetic() || b == b'_' || (colon && b == b':');
    bytes.next().is_some_and(ok_first)
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || (colon && b == b':'))
}

type Labels = Vec<(String, String)>;

fn parse_sample(line: &str) -> Option<(String, Labels, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    if !valid_name(name, true) {
        return None;
    }
    let mut labels = Vec::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        loop {
            let (start, c) = chars.next()?;
            if c == '}' {
                rest = &inner[start + 1..];
                break;
            }
            if c == ',' {
                continue;
            }
            let eq = inner[start..].find('=')? + start;
            let key = &inner[start..eq];
            if !valid_name(key, false) {
                return None;
            }
            while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        _ => return None,
                    },
                    '\n' => return None,
                    c => value.push(c),
                }
            }
            labels.push((key.to_owned(), value));
        }
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next()?)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some((name.to_owned(), labels, value))
}

#[test]
fn the_check_finds_what_promtool_finds() {
    let good = "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n\
                # HELP h Hist.\n# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n";
    assert!(problems(good).is_empty(), "{:?}", problems(good));
    for (bad, why) in [
        ("# TYPE a_total counter\na_total 1\n", "no HELP"),
        ("# HELP a X.\n# TYPE a counter\na 1\n", "_total"),
        (
            "# HELP a_total X.\n# TYPE a_total gauge\na_total 1\n",
            "non-counter",
        ),
        ("# HELP a X.\n# TYPE a gauge\na 1\na 2\n", "duplicate"),
        (
            "# HELP a X.\n# TYPE a gauge\n# HELP b X.\n# TYPE b gauge\na{k=\"1\"} 1\nb 1\na{k=\"2\"} 1\n",
            "contiguous",
        ),
        (
            "# HELP h X.\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",
            "cumulative",
        ),
        ("# HELP a X.\n# TYPE a gauge\na{k=\"1} 1\n", "unparsable"),
    ] {
        let found = problems(bad).join("\n");
        assert!(found.contains(why), "{why}: {found}");
    }
}
