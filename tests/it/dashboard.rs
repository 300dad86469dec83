//! The operator dashboard: sign-in, sessions, CSRF and the sign-in limit over HTTP; what workers
//! record for it (the per-minute series, RQ's `current_job`); and the pages in a real headless
//! Chromium driven through chromedriver, with a screenshot of each page under
//! `target/dashboard-screenshots/`.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use prosaas::jobs::{JobOptions, JobStore, NewJob, Outcome, Settlement};
use redis::Commands;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

use crate::support::process::TEST_TOKEN;
use crate::support::redis_server::TestDb;
use crate::support::{ProsaasProcess, db, eventually, kwargs, registered_worker};

/// A client that shows redirects instead of following them.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn api_process(t: &TestDb, extra: &[(&str, &str)]) -> ProsaasProcess {
    let mut env = vec![("REDIS_URL", t.url())];
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let p = ProsaasProcess::start("api", &env);
    p.wait_for_log("API mode", Duration::from_secs(20));
    p
}

/// Signs in with `token`; the status and, on success, the `Cookie` header to send.
async fn sign_in(c: &reqwest::Client, p: &ProsaasProcess, token: &str) -> (StatusCode, String) {
    let r = c
        .post(p.url("/dashboard/login"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    let status = r.status();
    let cookie = r
        .headers()
        .get(SET_COOKIE)
        .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_owned())
        .unwrap_or_default();
    (status, cookie)
}

/// The CSRF token the page shell carries for this session.
async fn csrf_of(c: &reqwest::Client, p: &ProsaasProcess, cookie: &str) -> String {
    let page = get_as(c, p.url("/dashboard"), cookie).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let start = html.find("name=\"csrf-token\" content=\"").unwrap() + 27;
    html[start..start + 64].to_owned()
}

/// A POST with the session cookie and, when given, a CSRF token.
async fn post_as(
    c: &reqwest::Client,
    url: String,
    cookie: &str,
    csrf: Option<&str>,
) -> reqwest::Response {
    let mut r = c.post(url).header(COOKIE, cookie);
    if let Some(token) = csrf {
        r = r.header("x-csrf-token", token);
    }
    r.send().await.unwrap()
}

/// A GET with the session cookie.
async fn get_as(c: &reqwest::Client, url: String, cookie: &str) -> reqwest::Response {
    c.get(url).header(COOKIE, cookie).send().await.unwrap()
}

/// A `diag.noop` job that failed for good (claimed and settled by hand): a worker that runs it
/// after a requeue finishes it.
async fn failed_job(store: &JobStore, id: &str) {
    failed_job_with(
        store,
        id,
        json!({"order": 42}),
        "Traceback (most recent call last):\nValueError: the order was on fire",
    )
    .await;
}

/// [`failed_job`] with these keyword arguments and this error.
async fn failed_job_with(store: &JobStore, id: &str, args: Value, error: &str) {
    let job = NewJob::new("default", "diag.noop", kwargs(args)).with_options(JobOptions {
        job_id: Some(id.into()),
        ..JobOptions::default()
    });
    store.enqueue(job).await.unwrap();
    let w = registered_worker(store, "dashboard-test-worker", &["default"]).await;
    let claimed = store
        .workers()
        .claim(&w, 1, Duration::from_secs(60), 1)
        .await
        .unwrap()
        .jobs;
    assert_eq!(claimed.len(), 1);
    let now = store.unix_now();
    store
        .workers()
        .settle(
            &w,
            &[Settlement {
                execution: claimed[0].execution.clone(),
                started_at: now,
                ended_at: now + 0.01,
                waited: Some(0.02),
                outcome: Outcome::Failed {
                    error: error.into(),
                    failure_ttl: -1,
                },
            }],
            None,
        )
        .await
        .unwrap();
    store.workers().unregister_worker(&w).await.unwrap();
}

/// Without a session every page, script and data endpoint refuses: pages redirect to the
/// sign-in form, data and actions answer 401. The sign-in form and the style sheet (no data)
/// are served to anyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: one list per kind of answer (redirect, 401, served to anyone), all against
// the same process.
async fn nothing_is_served_without_a_session() {
    let t = db();
    let p = api_process(&t, &[]);
    let c = http();
    for path in [
        "/dashboard",
        "/dashboard/workers",
        "/dashboard/failed",
        "/dashboard/jobs/abc",
        "/dashboard/scheduler",
        "/dashboard/calls",
        &asset_path("app", "js", APP_JS),
    ] {
        let r = c.get(p.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.headers()[LOCATION], "/dashboard/login", "{path}");
    }
    for path in [
        "/dashboard/api/overview",
        "/dashboard/api/workers",
        "/dashboard/api/failed",
        "/dashboard/api/jobs/abc",
        "/dashboard/api/jobs/abc/download",
        "/dashboard/api/scheduler",
        "/dashboard/api/calls",
    ] {
        let r = c.get(p.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized", "{path}");
    }
    let r = c
        .post(p.url("/dashboard/api/jobs/abc/requeue"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // A forged cookie (not signed with the secret) is no session either.
    let forged = "prosaas_dashboard=0123456789abcdef0123456789abcdef.9999999999.00";
    let r = c
        .get(p.url("/dashboard/api/overview"))
        .header(COOKIE, forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    for (path, cache) in [
        ("/dashboard/login".to_owned(), "no-store"),
        (
            asset_path("app", "css", APP_CSS),
            "public, max-age=31536000, immutable",
        ),
        (
            asset_path("favicon", "svg", FAVICON),
            "public, max-age=31536000, immutable",
        ),
    ] {
        let r = c.get(p.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["cache-control"], cache, "{path}");
        assert!(
            r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
    }
}

const APP_JS: &str = include_str!("../../src/http/dashboard/assets/app.js");
const APP_CSS: &str = include_str!("../../src/http/dashboard/assets/app.css");
const FAVICON: &str = include_str!("../../src/http/dashboard/assets/favicon.svg");

/// Where the dashboard serves a static file: its name carries the first 5 bytes of its SHA-256.
fn asset_path(stem: &str, ext: &str, body: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(body.as_bytes());
    let hash: String = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!("/dashboard/assets/{stem}.{hash}.{ext}")
}

fn gunzip(bytes: &[u8]) -> String {
    use std::io::Read;
    let mut out = String::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_string(&mut out)
        .unwrap();
    out
}

/// Pages, assets and data go out gzipped to a client that accepts it; the assets live under
/// names that follow their content and are kept for a year (the script only by the signed-in
/// browser); the shells name exactly those files; the old fixed names are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_compressed_and_cached_by_their_content() {
    let t = db();
    let p = api_process(&t, &[]);
    let c = http();
    let (_, cookie) = sign_in(&c, &p, TEST_TOKEN).await;
    let gz = |path: &str| {
        c.get(p.url(path))
            .header(COOKIE, &cookie)
            .header("accept-encoding", "gzip")
            .send()
    };
    let js = asset_path("app", "js", APP_JS);
    let css = asset_path("app", "css", APP_CSS);
    let icon = asset_path("favicon", "svg", FAVICON);
    let page = gz("/dashboard").await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["content-encoding"], "gzip");
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = gunzip(&page.bytes().await.unwrap());
    for path in [&js, &css, &icon] {
        assert!(html.contains(&format!("\"{path}\"")), "{path} in {html}");
    }
    for (path, body, cache) in [
        (&js, APP_JS, "private, max-age=31536000, immutable"),
        (&css, APP_CSS, "public, max-age=31536000, immutable"),
    ] {
        let r = gz(path).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["cache-control"], cache, "{path}");
        assert_eq!(r.headers()["content-encoding"], "gzip", "{path}");
        let sent = r.bytes().await.unwrap();
        assert!(sent.len() * 2 < body.len(), "{path}: {} bytes", sent.len());
        assert_eq!(gunzip(&sent), body, "{path}");
    }
    let data = gz("/dashboard/api/overview").await.unwrap();
    assert_eq!(data.headers()["content-encoding"], "gzip");
    let overview: Value = serde_json::from_str(&gunzip(&data.bytes().await.unwrap())).unwrap();
    assert!(overview["queues"].is_object(), "{overview}");
    // Without Accept-Encoding the same bytes come plain.
    let plain = get_as(&c, p.url(&css), &cookie).await;
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(plain.text().await.unwrap(), APP_CSS);
    for old in ["/dashboard/assets/app.js", "/dashboard/assets/app.css"] {
        let r = get_as(&c, p.url(old), &cookie).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{old}");
    }
}

/// A job's page cuts long values; its download holds them whole, as a file to save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_downloads_whole_where_its_page_cuts() {
    let t = db();
    let store = t.store();
    let long = "x".repeat(5_000);
    failed_job_with(
        &store,
        "dash-download-1",
        json!({"note": long}),
        "Traceback (most recent call last):\nValueError: too long",
    )
    .await;
    let p = api_process(&t, &[]);
    let c = http();
    let (_, cookie) = sign_in(&c, &p, TEST_TOKEN).await;
    let page: Value = get_as(&c, p.url("/dashboard/api/jobs/dash-download-1"), &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert!(page["kwargs"]["note"].as_str().unwrap().len() < 2_100);
    let r = get_as(
        &c,
        p.url("/dashboard/api/jobs/dash-download-1/download"),
        &cookie,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"job-dash-download-1.json\""
    );
    let whole: Value = r.json().await.unwrap();
    assert_eq!(whole["kwargs"]["note"], long.as_str());
    assert_eq!(
        whole["result"]["error"],
        "Traceback (most recent call last):\nValueError: too long"
    );
    let r = get_as(
        &c,
        p.url("/dashboard/api/jobs/no-such-job/download"),
        &cookie,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = get_as(
        &c,
        p.url("/dashboard/api/jobs/not%20valid!/download"),
        &cookie,
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

/// Each state of a queue lists a page at a time in the order an operator reads it (next to run
/// first while waiting, newest first once ended), with its total, entries whose hash is gone,
/// and the states' registries read as RQ writes them; bad requests are a JSON 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: one fixture (a queue with jobs in several states) read in every way a page can.
async fn every_state_lists_a_page_at_a_time() {
    let t = db();
    let store = t.store();
    failed_job_with(
        &store,
        "list-failed-1",
        json!({}),
        "Traceback (most recent call last):\nKeyError: 'a'",
    )
    .await;
    failed_job_with(
        &store,
        "list-failed-2",
        json!({}),
        "Traceback (most recent call last):\n  File \"x.py\"\nValueError: b\n\tmore",
    )
    .await;
    for i in 0..30 {
        let job =
            NewJob::new("default", "diag.noop", kwargs(json!({"i": i}))).with_options(JobOptions {
                job_id: Some(format!("list-q-{i:02}")),
                ..JobOptions::default()
            });
        store.enqueue(job).await.unwrap();
    }
    // As Python's enqueue_at leaves it: the hash, and the id in the scheduled registry.
    let mut conn = t.connection();
    let due = store.unix_now() + 3600.0;
    let _: () = conn.lrem("rq:queue:default", 0, "list-q-29").unwrap();
    let _: () = conn.zadd("rq:scheduled:default", "list-q-29", due).unwrap();
    let _: () = conn
        .hset("rq:job:list-q-29", "status", "scheduled")
        .unwrap();
    // A list may name a job whose hash expired.
    let _: () = conn.rpush("rq:queue:default", "ghost-1").unwrap();
    let p = api_process(&t, &[]);
    let c = http();
    let (_, cookie) = sign_in(&c, &p, TEST_TOKEN).await;
    let get = |path: String| {
        let (c, cookie) = (c.clone(), cookie.clone());
        let url = p.url(&path);
        async move {
            let r = get_as(&c, url, &cookie).await;
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let ids = |page: &Value| -> Vec<String> {
        page["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, first) = get("/dashboard/api/queues/default/queued".into()).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(
        (first["total"].as_u64(), first["page_size"].as_u64()),
        (Some(30), Some(25))
    );
    assert_eq!(ids(&first)[..2], ["list-q-00", "list-q-01"]);
    assert_eq!(ids(&first).len(), 25);
    let (_, second) = get("/dashboard/api/queues/default/queued?cursor=25".into()).await;
    assert_eq!(
        ids(&second),
        [
            "list-q-25",
            "list-q-26",
            "list-q-27",
            "list-q-28",
            "ghost-1"
        ]
    );
    assert_eq!(second["jobs"][4]["gone"], true);
    assert_eq!(second["jobs"][0]["job_type"], "diag.noop");
    let (_, failed) = get("/dashboard/api/queues/default/failed".into()).await;
    assert_eq!(
        ids(&failed),
        ["list-failed-2", "list-failed-1"],
        "newest first"
    );
    assert_eq!(failed["jobs"][0]["error"], "ValueError: b");
    assert_eq!(failed["newest_first"], true);
    let (_, scheduled) = get("/dashboard/api/queues/default/scheduled".into()).await;
    assert_eq!(ids(&scheduled), ["list-q-29"]);
    assert!((scheduled["jobs"][0]["score"].as_f64().unwrap() - due).abs() < 1.0);
    // Filters look through the list a window at a time and say how far they looked.
    let (_, found) = get("/dashboard/api/queues/default/failed?error=valueerror".into()).await;
    assert_eq!(ids(&found), ["list-failed-2"], "{found}");
    assert_eq!(
        (found["looked"].as_u64(), found["filtered"].as_bool()),
        (Some(2), Some(true))
    );
    assert!(
        found["next_cursor"].is_null(),
        "the end was reached: {found}"
    );
    let (_, none) = get("/dashboard/api/queues/default/queued?type=billing.charge".into()).await;
    assert_eq!(
        (ids(&none).len(), none["looked"].as_u64()),
        (0, Some(30)),
        "{none}"
    );
    let (_, some) =
        get("/dashboard/api/queues/default/queued?type=diag.noop&cursor=20".into()).await;
    assert_eq!(ids(&some).len(), 9, "{some}");
    assert_eq!(ids(&some)[0], "list-q-20");
    // A job's id by its start: every match, and how far the walk went.
    let (_, found) = get("/dashboard/api/find?prefix=list-q-0".into()).await;
    let found_ids: Vec<&str> = found["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(found_ids.len(), 10, "{found}");
    assert_eq!(found_ids[0], "list-q-00");
    assert_eq!(found["complete"], true, "{found}");
    for state in ["started", "deferred", "finished", "canceled"] {
        let (status, page) = get(format!("/dashboard/api/queues/default/{state}")).await;
        assert_eq!(
            (status, page["total"].as_u64()),
            (StatusCode::OK, Some(0)),
            "{state}"
        );
    }
    // A name Python RQ may give a queue reads (empty here); a control character does not.
    let (status, page) = get("/dashboard/api/queues/emails%3Ahigh%20priority/queued".into()).await;
    assert_eq!(
        (status, page["total"].as_u64()),
        (StatusCode::OK, Some(0)),
        "{page}"
    );
    for (path, says) in [
        (
            "/dashboard/api/queues/default/bogus",
            "state is one of queued, scheduled",
        ),
        (
            "/dashboard/api/queues/bad%0Aname/queued",
            "without control characters",
        ),
        (
            "/dashboard/api/queues/default/failed?lane=acme",
            "queued jobs only",
        ),
        ("/dashboard/api/find?prefix=a*b", "prefix is"),
    ] {
        let (status, body) = get(path.into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(
            body["detail"].as_str().unwrap().contains(says),
            "{path}: {body}"
        );
    }
}

/// The dashboard's actions beyond requeue: pause and resume a queue, cancel and stop a job,
/// several picked jobs at once (each on its own: one that cannot be done does not hold back the
/// rest), and every failed job of a queue; each needs the CSRF token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// Long on purpose: one fixture, every action against it in turn, each checked in Redis.
async fn pause_cancel_stop_and_bulk_actions_do_what_they_say() {
    let t = db();
    let store = t.store();
    for id in ["act-f1", "act-f2", "act-f3"] {
        failed_job_with(&store, id, json!({}), "ValueError: no").await;
    }
    for id in ["act-q1", "act-q2", "act-q3"] {
        let job = NewJob::new("default", "diag.noop", kwargs(json!({}))).with_options(JobOptions {
            job_id: Some(id.into()),
            ..JobOptions::default()
        });
        store.enqueue(job).await.unwrap();
    }
    let p = api_process(&t, &[]);
    let c = http();
    let (_, cookie) = sign_in(&c, &p, TEST_TOKEN).await;
    let csrf = csrf_of(&c, &p, &cookie).await;
    let post = |path: &str, body: Option<Value>| {
        let mut r = c
            .post(p.url(path))
            .header(COOKIE, &cookie)
            .header("x-csrf-token", &csrf);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let mut conn = t.connection();
    let (status, body) = post("/dashboard/api/queues/default/pause", None).await;
    assert_eq!(
        (status, &body["paused"]),
        (StatusCode::OK, &json!(true)),
        "{body}"
    );
    let paused: bool = conn.sismember("prosaas:paused", "default").unwrap();
    assert!(paused);
    let list: Value = get_as(&c, p.url("/dashboard/api/queues/default/queued"), &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["paused"], true);
    let (_, body) = post("/dashboard/api/queues/default/unpause", None).await;
    assert_eq!(
        (&body["paused"], &body["changed"]),
        (&json!(false), &json!(true))
    );
    let (_, body) = post("/dashboard/api/jobs/act-q1/cancel", None).await;
    assert_eq!(body["result"], "canceled", "{body}");
    let status: String = conn.hget("rq:job:act-q1", "status").unwrap();
    assert_eq!(status, "canceled");
    let (_, body) = post("/dashboard/api/jobs/act-q2/stop", None).await;
    assert_eq!(body["result"], "not_running", "{body}");
    let (status, body) = post(
        "/dashboard/api/jobs/bulk",
        Some(json!({"action": "cancel", "ids": ["act-q2", "no-such-job"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["done"], 1, "{body}");
    assert_eq!(body["results"][1]["error"]["error"], "not_found", "{body}");
    let (_, body) = post(
        "/dashboard/api/jobs/bulk",
        Some(json!({"action": "requeue", "ids": ["act-f1", "act-q3"]})),
    )
    .await;
    assert_eq!(body["done"], 1, "{body}");
    assert_eq!(body["results"][1]["error"]["error"], "not_failed", "{body}");
    let queued: Vec<String> = conn.lrange("rq:queue:default", 0, -1).unwrap();
    assert_eq!(queued, ["act-q3", "act-f1"]);
    let (_, body) = post("/dashboard/api/failed/delete-all?queue=default", None).await;
    assert_eq!(body["deleted"], 2, "{body}");
    let left: u64 = conn.zcard("rq:failed:default").unwrap();
    let gone: bool = conn.exists("rq:job:act-f2").unwrap();
    assert_eq!((left, gone), (0, false));
    for (body, says) in [
        (
            json!({"action": "explode", "ids": ["act-q3"]}),
            "action is one of",
        ),
        (json!({"action": "delete", "ids": []}), "1 to 100"),
        (
            json!({"action": "delete", "ids": vec!["x"; 101]}),
            "1 to 100",
        ),
    ] {
        let (status, answer) = post("/dashboard/api/jobs/bulk", Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["detail"].as_str().unwrap().contains(says),
            "{answer}"
        );
    }
    // Without the CSRF token nothing happens.
    let r = post_as(
        &c,
        p.url("/dashboard/api/queues/default/pause"),
        &cookie,
        None,
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let paused: bool = conn.sismember("prosaas:paused", "default").unwrap();
    assert!(!paused);
}

/// Past the listing's bound (every configured queue and the first 100 others by name), health
/// and the overview say how many queues they left out, instead of dropping them silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_past_the_bound_are_counted_not_dropped() {
    let t = db();
    let mut conn = t.connection();
    for i in 0..120 {
        let _: () = conn
            .sadd("rq:queues", format!("rq:queue:bulk-{i:03}"))
            .unwrap();
    }
    // A tenant lane is its queue's, never a queue of its own.
    let _: () = conn.sadd("rq:queues", "rq:queue:bulk-000@acme").unwrap();
    let p = api_process(&t, &[]);
    let c = http();
    let health: Value = c
        .get(p.url("/api/jobs/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listed = health["queues"].as_object().unwrap();
    let configured = ["default", "high", "low"];
    assert!(
        configured.iter().all(|q| listed.contains_key(*q)),
        "{listed:?}"
    );
    assert_eq!(listed.len(), 100);
    assert_eq!(
        health["queues_not_listed"],
        120 - (100 - configured.len()),
        "{health}"
    );
    let (_, cookie) = sign_in(&c, &p, TEST_TOKEN).await;
    let overview: Value = get_as(&c, p.url("/dashboard/api/overview"), &cookie)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(overview["queues_not_listed"], health["queues_not_listed"]);
}

/// With neither DASHBOARD_PASSWORD nor INTERNAL_API_TOKEN nobody can sign in: the form says
/// why (503), pages lead to it, data answers 503 naming the variables.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_the_dashboard_says_what_to_set() {
    let t = db();
    let p = ProsaasProcess::start(
        "all",
        &[("REDIS_URL", &t.url()), ("INTERNAL_API_TOKEN", "")],
    );
    p.wait_for_log("worker registered", Duration::from_secs(20));
    let c = http();
    let r = c.get(p.url("/dashboard")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    for r in [
        c.get(p.url("/dashboard/login")).send().await.unwrap(),
        c.post(p.url("/dashboard/login"))
            .form(&[("token", "")])
            .send()
            .await
            .unwrap(),
    ] {
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        let html = r.text().await.unwrap();
        assert!(
            html.contains("set DASHBOARD_PASSWORD or INTERNAL_API_TOKEN"),
            "{html}"
        );
    }
    let r = c
        .get(p.url("/dashboard/api/overview"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_configured");
}

/// A wrong token gets 401 and counts against the address; past the limit every sign-in from
/// it gets 429 with Retry-After, the right token included (it is not even compared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_are_refused_and_then_rate_limited() {
    let t = db();
    let p = api_process(
        &t,
        &[
            ("PROSAAS__DASHBOARD__LOGIN_FAILURES_PER_MINUTE", "3"),
            ("DASHBOARD_PASSWORD", "the-dashboard-password"),
        ],
    );
    let c = http();
    // DASHBOARD_PASSWORD, when set, is what signs in: the API token does not.
    let (status, cookie) = sign_in(&c, &p, TEST_TOKEN).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(cookie.is_empty());
    for _ in 0..2 {
        assert_eq!(sign_in(&c, &p, "guess").await.0, StatusCode::UNAUTHORIZED);
    }
    let r = c
        .post(p.url("/dashboard/login"))
        .form(&[("token", "the-dashboard-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(r.headers().get(SET_COOKIE).is_none());
    assert!(p.logs().contains("dashboard: failed sign-in"));
}

/// Signing in sets a signed HttpOnly SameSite=Strict cookie with an expiry; an action without
/// the session's CSRF token is refused (403) and changes nothing; with it, it acts; signing out
/// ends the session on the server, so the same cookie replayed is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_the_csrf_token_and_signing_out_ends_the_session() {
    let t = db();
    let store = t.store();
    failed_job(&store, "dash-csrf-1").await;
    let p = api_process(&t, &[]);
    let c = http();
    let cookie = the_session_cookie_is_locked_down(&c, &p).await;
    let csrf = csrf_of(&c, &p, &cookie).await;
    // A cookie of the same name planted before ours (a sibling subdomain's, a parent path's)
    // does not lock the operator out.
    let planted = format!("prosaas_dashboard=junk; {cookie}");
    let r = c
        .get(p.url("/dashboard/api/overview"))
        .header(COOKIE, planted)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    let requeue = p.url("/dashboard/api/jobs/dash-csrf-1/requeue");
    let r = post_as(&c, requeue.clone(), &cookie, None).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "csrf");
    let r = post_as(&c, requeue.clone(), &cookie, Some(&"0".repeat(64))).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let mut conn = t.connection();
    let status: String = conn.hget("rq:job:dash-csrf-1", "status").unwrap();
    assert_eq!(status, "failed", "a refused action changed nothing");
    bad_input_is_a_json_400(&c, &p, &cookie, &csrf).await;

    let r = post_as(&c, requeue, &cookie, Some(&csrf)).await;
    assert_eq!(r.status(), StatusCode::OK);
    let status: String = conn.hget("rq:job:dash-csrf-1", "status").unwrap();
    assert_eq!(status, "queued");
    let queued: Vec<String> = conn.lrange("rq:queue:default", 0, -1).unwrap();
    assert_eq!(queued, ["dash-csrf-1"]);
    // The action is in the log, with the session that took it (as its sign-in logged it).
    let session = &cookie["prosaas_dashboard=".len()..][..8];
    let line = p.wait_for_log("dashboard action", Duration::from_secs(5));
    assert!(
        line.contains(session) && line.contains("dash-csrf-1") && line.contains("done=true"),
        "{line}"
    );
    signing_out_ends_only_this_session(&c, &p, &cookie, &csrf).await;
}

/// Signing in answers with a cookie that scripts cannot read, other sites cannot send, that
/// expires and travels only over TLS to the dashboard's paths; returns it (`name=value`).
async fn the_session_cookie_is_locked_down(c: &reqwest::Client, p: &ProsaasProcess) -> String {
    let r = c
        .post(p.url("/dashboard/login"))
        .form(&[("token", TEST_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[LOCATION], "/dashboard");
    let set = r.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    for attribute in [
        "HttpOnly",
        "SameSite=Strict",
        "Max-Age=43200",
        "Secure",
        "Path=/dashboard",
    ] {
        assert!(set.contains(attribute), "{attribute} missing from {set}");
    }
    set.split(';').next().unwrap().to_owned()
}

/// Bad input gets a JSON 400 naming it, and changes nothing; a cursor past the end is an empty
/// page, not an error.
async fn bad_input_is_a_json_400(
    c: &reqwest::Client,
    p: &ProsaasProcess,
    cookie: &str,
    csrf: &str,
) {
    let r = post_as(
        c,
        p.url("/dashboard/api/failed/requeue-all"),
        cookie,
        Some(csrf),
    )
    .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = get_as(c, p.url("/dashboard/api/failed?cursor=-1"), cookie).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("cursor"),
        "{body}"
    );
    let far = format!("/dashboard/api/failed?queue=default&cursor={}", usize::MAX);
    let r = get_as(c, p.url(&far), cookie).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "a cursor past the end is an empty page"
    );
    assert_eq!(r.json::<Value>().await.unwrap()["jobs"], json!([]));
}

/// Another session's token does not sign this one out; its own does, on the server, so the
/// cookie replayed is refused, and the other session is untouched.
async fn signing_out_ends_only_this_session(
    c: &reqwest::Client,
    p: &ProsaasProcess,
    cookie: &str,
    csrf: &str,
) {
    let (_, other) = sign_in(c, p, TEST_TOKEN).await;
    let other_csrf = csrf_of(c, p, &other).await;
    assert_ne!(other_csrf, csrf);
    let r = post_as(c, p.url("/dashboard/logout"), cookie, Some(&other_csrf)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    let r = post_as(c, p.url("/dashboard/logout"), cookie, Some(csrf)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let r = get_as(c, p.url("/dashboard"), cookie).await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "a signed-out cookie replayed"
    );
    let r = get_as(c, p.url("/dashboard/api/overview"), cookie).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = get_as(c, p.url("/dashboard/api/overview"), &other).await;
    assert_eq!(r.status(), StatusCode::OK);
}

/// Workers record what the dashboard shows in the calls they already make: the per-minute
/// counts and waits (settle), their running jobs, and (with `worker.record_current_job`) RQ's
/// `current_job` (claim, settle), which Python RQ up to 2.12 reads.
/// (A worker-role process, so no scheduler adds jobs of its own to the counts.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_record_the_series_and_their_current_job() {
    let t = db();
    let p = ProsaasProcess::start(
        "worker",
        &[
            ("REDIS_URL", &t.url()),
            ("PROSAAS__WORKER__CONCURRENCY", "4"),
            ("PROSAAS__WORKER__RECORD_CURRENT_JOB", "true"),
        ],
    );
    p.wait_for_log("worker registered", Duration::from_secs(20));
    let store = t.store();
    for i in 0..3 {
        let job = NewJob::new("default", "diag.sleep", kwargs(json!({"ms": 2500}))).with_options(
            JobOptions {
                job_id: Some(format!("sleepy-{i}")),
                ..JobOptions::default()
            },
        );
        store.enqueue(job).await.unwrap();
    }
    let dashboard = store.stats();
    let busy = eventually(
        "a worker shows its sleeping jobs",
        Duration::from_secs(15),
        || async {
            let workers = dashboard.workers().await.ok()?;
            workers.into_iter().find(|w| w.running == 3)
        },
    )
    .await;
    let current = busy.current_job.clone().unwrap();
    assert!(current.starts_with("sleepy-"), "{busy:?}");
    let jobs: Vec<&str> = busy.jobs.iter().map(|j| j.id.as_str()).collect();
    assert_eq!(jobs, ["sleepy-0", "sleepy-1", "sleepy-2"]);
    assert_eq!(busy.state.as_deref(), Some("busy"));
    assert_eq!(busy.jobs[0].queue.as_deref(), Some("default"));
    assert!(busy.jobs[0].age_secs.is_some(), "{busy:?}");
    let mut conn = t.connection();
    let key = format!("rq:worker:{}", busy.name);
    let raw: Option<String> = conn.hget(&key, "current_job").unwrap();
    assert_eq!(raw, Some(current), "RQ's field, as Python RQ reads it");
    // Failures for the series, enqueued only now: with a free slot the worker would claim one
    // between the two reads above, and its current job would move on.
    for i in 0..5 {
        let job = NewJob::new("default", "diag.fail", kwargs(json!({"permanent": i < 2})));
        store.enqueue(job).await.unwrap();
    }

    let idle = eventually("the worker goes idle", Duration::from_secs(15), || async {
        let workers = dashboard.workers().await.ok()?;
        workers.into_iter().find(|w| w.running == 0)
    })
    .await;
    assert_eq!(idle.current_job, None, "{idle:?}");
    let raw: Option<String> = conn.hget(&key, "current_job").unwrap();
    assert_eq!(raw, None);
    the_series_counts_every_settled_start(&store, &mut conn).await;
}

/// diag.fail's retryable failures may still be retrying (with a backoff): at least their first
/// attempts have settled, and every settled start has its wait counted, in minutes kept a
/// bounded time. A busy worker writes its counts once a second: they are there within that.
async fn the_series_counts_every_settled_start(store: &JobStore, conn: &mut redis::Connection) {
    let series = eventually(
        "the series to count the three sleeps and the first failures",
        Duration::from_secs(3),
        || async {
            let series = store.stats().series().await.ok()?;
            let counted = |f: fn(&prosaas::jobs::Minute) -> u64| series.iter().map(f).sum::<u64>();
            (counted(|m| m.finished) >= 3 && counted(|m| m.failed) + counted(|m| m.retried) >= 5)
                .then_some(series)
        },
    )
    .await;
    assert_eq!(series.len(), 60);
    let finished: u64 = series.iter().map(|m| m.finished).sum();
    let failed: u64 = series.iter().map(|m| m.failed).sum();
    let retried: u64 = series.iter().map(|m| m.retried).sum();
    let starts: u64 = series.iter().map(|m| m.starts).sum();
    assert_eq!(finished, 3, "{series:?}");
    assert!(
        failed >= 2,
        "the two permanent failures at least: {series:?}"
    );
    assert!(
        retried >= 3,
        "each retryable failure once at least: {series:?}"
    );
    assert_eq!(
        starts,
        finished + failed + retried,
        "one wait per settled start"
    );
    let last = series.iter().rev().find(|m| m.starts > 0).unwrap();
    assert!(last.wait_p95_ms.is_some(), "{last:?}");
    let keys: Vec<String> = conn.keys("prosaas:minute:*").unwrap();
    assert!(!keys.is_empty());
    for k in keys {
        let ttl: i64 = conn.ttl(&k).unwrap();
        assert!(
            (1..=7200).contains(&ttl),
            "{k} is kept a bounded time: {ttl}"
        );
    }
}

/// chromedriver on a free port, stopped when dropped; `None` when it is not installed (CI
/// installs it: `.ci/run`), so a developer machine without it says so instead of failing.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<Chromedriver> {
    let path = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())?;
    let port = crate::support::redis_server::free_port();
    let child = Command::new(path)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let driver = Chromedriver { child, port };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "chromedriver did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(driver)
}

async fn browser(driver: &Chromedriver, width: u32, height: u32) -> fantoccini::Client {
    browser_with(driver, width, height, &[]).await
}

/// [`browser`] with more Chromium switches.
async fn browser_with(
    driver: &Chromedriver,
    width: u32,
    height: u32,
    extra: &[&str],
) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    // No sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        format!("--window-size={width},{height}"),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": args, "binary": "/usr/bin/chromium"}),
    );
    fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a Chromium session through chromedriver")
}

async fn screenshot(b: &fantoccini::Client, name: &str) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/dashboard-screenshots");
    std::fs::create_dir_all(dir).unwrap();
    let png = b.screenshot().await.unwrap();
    std::fs::write(format!("{dir}/{name}.png"), png).unwrap();
}

/// The text of the element `css` names, if it is there now.
async fn text_now(b: &fantoccini::Client, css: &str) -> Option<String> {
    b.find(fantoccini::Locator::Css(css))
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The text of the element `css` names, once it is there.
async fn text_of(b: &fantoccini::Client, css: &str) -> String {
    b.wait()
        .at_most(Duration::from_secs(15))
        .for_element(fantoccini::Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

/// The whole operator path in headless Chromium: sign in, see the queues' counts match
/// `/api/jobs/health`, open a failed job from the failed list, requeue it, watch it leave the
/// list and (once a worker runs) finish on its page without reloading it, visit every page
/// (screenshots, phone width too), sign out and be refused. Also measures each page's total
/// transfer (shell, style, script, data) against the 300 KB budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_requeues_a_failed_job_in_a_real_browser() {
    let Some(driver) = chromedriver() else {
        eprintln!(
            "SKIPPED: chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser test: .ci/run installs chromium-driver"
        );
        return;
    };
    let t = db();
    let store = t.store();
    failed_job(&store, "dash-browser-1").await;
    long_traceback_job(&store, "dash-browser-2").await;
    for i in 0..3 {
        store
            .enqueue(NewJob::new("low", "diag.noop", kwargs(json!({"n": i}))))
            .await
            .unwrap();
    }
    let api = api_process(&t, &[("PROSAAS__DASHBOARD__SECURE_COOKIE", "false")]);
    let mut scheduler = ProsaasProcess::start("scheduler", &[("REDIS_URL", &t.url())]);
    let b = browser(&driver, 1280, 900).await;

    b.goto(&api.url("/dashboard")).await.unwrap();
    assert!(
        b.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/dashboard/login")
    );
    screenshot(&b, "login").await;
    sign_in_with_the_form(&b).await;
    the_overview_shows_what_health_says(&b, &api).await;
    a_count_opens_its_list(&b).await;
    requeue_from_the_failed_list(&b, &api).await;
    let mut worker = ProsaasProcess::start("worker", &[("REDIS_URL", &t.url())]);
    the_open_job_page_shows_it_finish(&b, &api).await;
    every_page_draws(&b, &api).await;
    the_overview_fits_a_phone(&driver, &api).await;
    the_job_box_opens_the_job_and_its_timeline(&b, &api).await;
    a_traceback_opens_at_its_end_and_unknown_ids_say_so(&b, &api).await;
    a_picked_job_is_deleted_after_asking(&b, &api).await;
    every_page_weighs_under_300_kb(&b, &api).await;
    no_page_has_serious_accessibility_problems(&b, &api).await;
    signing_out_locks_the_pages(&b, &api).await;
    b.close().await.unwrap();
    worker.stop();
    scheduler.stop();
}

/// A failed job whose traceback has 150 frames, taller than its box on the page.
async fn long_traceback_job(store: &JobStore, id: &str) {
    let frames: String = (0..150)
        .map(|i| {
            format!(
                "  File \"app.py\", line {i}, in step_{i}\n    step_{}()\n",
                i + 1
            )
        })
        .collect();
    failed_job_with(
        store,
        id,
        json!({"order": 43}),
        &format!("Traceback (most recent call last):\n{frames}KeyError: 'the last line'"),
    )
    .await;
}

/// With a worker running, the job page left open shows the job finish by itself, and the job
/// is gone from the failed list.
async fn the_open_job_page_shows_it_finish(b: &fantoccini::Client, api: &ProsaasProcess) {
    eventually(
        "the page shows the job finished",
        Duration::from_secs(30),
        || async { (text_now(b, "#job-status").await? == "finished").then_some(()) },
    )
    .await;
    b.goto(&api.url("/dashboard/failed?queue=default"))
        .await
        .unwrap();
    text_of(b, "#failed").await;
    assert!(
        b.find(fantoccini::Locator::Css("tr[data-job=\"dash-browser-1\"]"))
            .await
            .is_err(),
        "the requeued job left the failed list"
    );
}

async fn sign_in_with_the_form(b: &fantoccini::Client) {
    let form = b.form(fantoccini::Locator::Css("form")).await.unwrap();
    form.set_by_name("token", TEST_TOKEN).await.unwrap();
    form.submit().await.unwrap();
}

/// The status and counts on the overview are the health endpoint's.
async fn the_overview_shows_what_health_says(b: &fantoccini::Client, api: &ProsaasProcess) {
    let shown_status = text_of(b, "#health-status").await;
    let health: Value = http()
        .get(api.url("/api/jobs/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        shown_status,
        health["status"].as_str().unwrap().to_uppercase()
    );
    for (queue, count) in [
        ("low", "queued"),
        ("default", "failed"),
        ("default", "queued"),
    ] {
        let shown = text_of(
            b,
            &format!("tr[data-queue=\"{queue}\"] td[data-count=\"{count}\"]"),
        )
        .await;
        assert_eq!(
            shown,
            health["queues"][queue][count].to_string(),
            "{queue} {count}"
        );
    }
    assert_eq!(health["queues"]["low"]["queued"], 3);
    screenshot(b, "overview").await;
}

/// A count on the overview opens that state's list of that queue, which a filter narrows (before
/// any worker runs: the three jobs queued on `low`).
async fn a_count_opens_its_list(b: &fantoccini::Client) {
    b.find(fantoccini::Locator::Css(
        "tr[data-queue=\"low\"] td[data-count=\"queued\"] a",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    let rows = text_of(b, "#jobs").await;
    assert_eq!(b.title().await.unwrap(), "Jobs · prosaas");
    assert_eq!(rows.matches("diag.noop").count(), 3, "{rows}");
    assert!(text_of(b, "main").await.contains("1–3 of 3 queued"));
    screenshot(b, "list").await;
    // A filter says how far it looked.
    let filter = b.form(fantoccini::Locator::Id("filter")).await.unwrap();
    filter.set_by_name("type", "diag.noop").await.unwrap();
    filter.submit().await.unwrap();
    let looked = text_of(b, ".looked").await;
    assert_eq!(
        looked,
        "3 matched among entries 1–3 of 3 queued, next to run first"
    );
    assert!(text_of(b, "main").await.contains("reached the end"));
}

/// The failed list names the error; the job's page requeues it.
async fn requeue_from_the_failed_list(b: &fantoccini::Client, api: &ProsaasProcess) {
    b.goto(&api.url("/dashboard/failed?queue=default"))
        .await
        .unwrap();
    let error = text_of(b, "tr[data-job=\"dash-browser-1\"] td:nth-child(3)").await;
    assert_eq!(error, "ValueError: the order was on fire");
    screenshot(b, "failed").await;
    b.find(fantoccini::Locator::Css(
        "tr[data-job=\"dash-browser-1\"] a",
    ))
    .await
    .unwrap()
    .click()
    .await
    .unwrap();
    assert_eq!(text_of(b, "#job-status").await, "failed");
    assert!(
        text_of(b, "#result")
            .await
            .contains("the order was on fire")
    );
    screenshot(b, "job").await;
    b.find(fantoccini::Locator::Id("requeue"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(text_of(b, "#toast").await.contains("requeued"));
    assert_eq!(text_of(b, "#job-status").await, "queued");
}

/// The workers, scheduler and calls pages draw their data; the scheduler's shows the leader.
async fn every_page_draws(b: &fantoccini::Client, api: &ProsaasProcess) {
    for page in ["workers", "scheduler", "calls"] {
        b.goto(&api.url(&format!("/dashboard/{page}")))
            .await
            .unwrap();
        eventually(
            &format!("{page} drawn"),
            Duration::from_secs(10),
            || async {
                text_now(b, "#updated")
                    .await?
                    .starts_with("Updated")
                    .then_some(())
            },
        )
        .await;
        if page == "scheduler" {
            // The leader's lock and its entries, as of its last tick.
            eventually("the leader shown", Duration::from_secs(20), || async {
                let text = text_now(b, "#scheduler").await?;
                text.contains("scheduler.").then_some(())
            })
            .await;
            assert!(text_of(b, "main").await.contains("send-due-reminders"));
        }
        screenshot(b, page).await;
    }
    assert!(
        text_of(b, "main")
            .await
            .contains("No queue has tenant lanes")
    );
}

/// Phone width, in dark mode: the overview still reads (no horizontal overflow of the page itself)
/// and takes the dark colours.
async fn the_overview_fits_a_phone(driver: &Chromedriver, api: &ProsaasProcess) {
    // A phone set to dark mode, which the page follows.
    let phone = browser_with(
        driver,
        390,
        844,
        &["--blink-settings=preferredColorScheme=0"],
    )
    .await;
    phone.goto(&api.url("/dashboard/login")).await.unwrap();
    sign_in_with_the_form(&phone).await;
    text_of(&phone, "#queues").await;
    let overflow = phone
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overflow, json!(0), "the page is no wider than a phone");
    let background = phone
        .execute(
            "return [matchMedia('(prefers-color-scheme: dark)').matches,
                     getComputedStyle(document.body).backgroundColor];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(background, json!([true, "rgb(20, 23, 27)"]), "dark mode");
    screenshot(&phone, "overview-phone-dark").await;
    phone.close().await.unwrap();
}

/// The header's job box finds jobs by the start of their id and opens one by its whole id from
/// any page; its timeline holds both runs: the failure, then (after the requeue) the finish.
async fn the_job_box_opens_the_job_and_its_timeline(b: &fantoccini::Client, api: &ProsaasProcess) {
    b.goto(&api.url("/dashboard/workers")).await.unwrap();
    // The start of an id lists the jobs it begins; a whole id opens its job.
    let find = b.form(fantoccini::Locator::Id("find")).await.unwrap();
    find.set_by_name("id", "dash-brow").await.unwrap();
    find.submit().await.unwrap();
    let found = text_of(b, "#found").await;
    assert!(
        found.contains("dash-browser-1") && found.contains("dash-browser-2"),
        "{found}"
    );
    assert!(text_of(b, "#walked").await.contains("every key"));
    let find = b.form(fantoccini::Locator::Id("find")).await.unwrap();
    find.set_by_name("id", "dash-browser-1").await.unwrap();
    find.submit().await.unwrap();
    assert_eq!(text_of(b, "#job-status").await, "finished");
    assert_eq!(b.title().await.unwrap(), "Job · prosaas");
    let timeline = text_of(b, "#timeline").await;
    let failed = timeline
        .find("failed on dashboard-test-worker")
        .expect(&timeline);
    let finished = timeline.find("finished on ").expect(&timeline);
    assert!(failed < finished, "{timeline}");
}

/// A long traceback shows its last line without scrolling; an unknown id and a malformed one
/// each get a "Not found" page that stops polling, not the overview or "Loading…" forever.
async fn a_traceback_opens_at_its_end_and_unknown_ids_say_so(
    b: &fantoccini::Client,
    api: &ProsaasProcess,
) {
    b.goto(&api.url("/dashboard/jobs/dash-browser-2"))
        .await
        .unwrap();
    text_of(b, "#result").await;
    let (height, view, top) = {
        let v = b
            .execute(
                "const r = document.getElementById('result');
                 return [r.scrollHeight, r.clientHeight, r.scrollTop];",
                vec![],
            )
            .await
            .unwrap();
        let n = |i: usize| v[i].as_f64().unwrap();
        (n(0), n(1), n(2))
    };
    assert!(
        height > view * 2.0,
        "the traceback scrolls: {height} > {view}"
    );
    assert!(
        top + view >= height - 2.0,
        "at its end: {top} + {view} of {height}"
    );
    screenshot(b, "job-traceback").await;
    for (path, says) in [
        ("/dashboard/jobs/no-such-job", "no job no-such-job"),
        ("/dashboard/jobs/not%20a%20valid%20id!", "not a job id"),
    ] {
        b.goto(&api.url(path)).await.unwrap();
        let shown = text_of(b, "#not-found").await;
        assert!(
            shown.contains("Not found") && shown.contains(says),
            "{path}: {shown}"
        );
        assert_eq!(b.title().await.unwrap(), "Not found · prosaas", "{path}");
        assert!(
            b.find(fantoccini::Locator::Id("queues")).await.is_err(),
            "{path} drew the overview"
        );
    }
}

/// On a state's list, a job picked by its checkbox goes with the bulk button, after the browser
/// asks (the confirm dialog, accepted here).
async fn a_picked_job_is_deleted_after_asking(b: &fantoccini::Client, api: &ProsaasProcess) {
    b.goto(&api.url("/dashboard/queues/default/failed"))
        .await
        .unwrap();
    assert!(text_of(b, "#jobs").await.contains("dash-browser-2"));
    for css in [
        "input[data-pick=\"dash-browser-2\"]",
        "button[data-bulk=\"delete\"]",
    ] {
        b.find(fantoccini::Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    b.accept_alert().await.unwrap();
    assert!(
        text_of(b, "#toast").await.contains("1 of 1 jobs deleted"),
        "the toast says what was done"
    );
    eventually("the row left the list", Duration::from_secs(10), || async {
        let text = text_now(b, "#jobs").await?;
        (!text.contains("dash-browser-2")).then_some(())
    })
    .await;
    screenshot(b, "list-failed").await;
}

/// What each page costs, measured by the browser itself right after the page first draws: the
/// bodies it needs (shell, style, script, first data; compressed as sent) within 300 KB, and
/// what moving to it actually transferred, headers included, within 8 KB: the style and script
/// come from the browser's cache under their content's names (earlier pages fetched them).
async fn every_page_weighs_under_300_kb(b: &fantoccini::Client, api: &ProsaasProcess) {
    for (path, drawn) in [
        ("/dashboard", "#queues"),
        ("/dashboard/workers", "#workers"),
        ("/dashboard/failed", "#failed"),
        ("/dashboard/jobs/dash-browser-1", "#job"),
        ("/dashboard/scheduler", "#scheduler"),
        ("/dashboard/calls", "main h2"),
    ] {
        b.goto(&api.url(path)).await.unwrap();
        text_of(b, drawn).await;
        let sizes = b
            .execute(
                "const r = performance.getEntriesByType('resource')
                   .concat(performance.getEntriesByType('navigation'));
                 const assets = r.filter(e => /\\/dashboard\\/assets\\/app\\.[0-9a-f]+\\.(js|css)$/.test(e.name));
                 return [r.reduce((n, e) => n + e.encodedBodySize, 0),
                         r.reduce((n, e) => n + e.transferSize, 0),
                         assets.length];",
                vec![],
            )
            .await
            .unwrap();
        let n = |i: usize| sizes[i].as_f64().unwrap();
        let (bodies, transferred, assets) = (n(0), n(1), n(2));
        eprintln!("page weight of {path}: {bodies} bytes of bodies, {transferred} transferred");
        assert!(bodies > 1000.0 && bodies < 300_000.0, "{path}: {bodies}");
        assert_eq!(assets, 2.0, "{path}: the style and the script");
        assert!(
            transferred > 0.0 && transferred < 8_000.0,
            "{path}: {transferred}"
        );
    }
}

/// axe-core (installed from npm by .ci/run into target/axe; never from a CDN) finds nothing
/// serious or critical on any page, signed in or not.
async fn no_page_has_serious_accessibility_problems(b: &fantoccini::Client, api: &ProsaasProcess) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/axe/node_modules/axe-core/axe.min.js");
    let Ok(axe) = std::fs::read_to_string(&path) else {
        eprintln!(
            "SKIPPED the accessibility check: {} is missing (bash .ci/run installs it)",
            path.display()
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the accessibility check"
        );
        return;
    };
    for (page, drawn) in [
        ("/dashboard", "#queues"),
        ("/dashboard/workers", "#workers"),
        ("/dashboard/failed", "main h1"),
        ("/dashboard/queues/default/finished", "#jobs"),
        ("/dashboard/jobs/dash-browser-1", "#job"),
        ("/dashboard/jobs/no-such-job", "#not-found"),
        ("/dashboard/find?prefix=dash", "#found"),
        ("/dashboard/scheduler", "#scheduler"),
        ("/dashboard/calls", "main h2"),
    ] {
        b.goto(&api.url(page)).await.unwrap();
        text_of(b, drawn).await;
        b.execute(&format!("{axe}\nreturn true;"), vec![])
            .await
            .unwrap();
        let found = b
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { resultTypes: ['violations'] }).then(r => done(
                   r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', ')}`)));",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(found, json!([]), "{page}");
    }
}

/// Signing out returns to the sign-in page, and every page sends there again.
async fn signing_out_locks_the_pages(b: &fantoccini::Client, api: &ProsaasProcess) {
    b.find(fantoccini::Locator::Id("logout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    eventually("signed out", Duration::from_secs(10), || async {
        let url = b.current_url().await.ok()?;
        url.path().ends_with("/dashboard/login").then_some(())
    })
    .await;
    b.goto(&api.url("/dashboard/failed")).await.unwrap();
    assert!(
        b.current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/dashboard/login")
    );
}
