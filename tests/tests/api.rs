//! The local automation API as a line controller and an MES drive it: `keyfill serve` on a real
//! socket, called with curl; every endpoint with good input, bad input, no token and the wrong
//! scope; provisioning jobs on a line's lanes keyed by simulated devices and followed on the event
//! stream; orders imported and their signed report verified; export and rotation runs against the
//! test C2 and Mosquitto.

use anyhow::{Context, Result, bail, ensure};
use keyfill_e2e::c2::{C2Server, CryptoMode};
use keyfill_e2e::farm::Farm;
use keyfill_e2e::{Database, Station};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BROKER: &str = "mqtt://127.0.0.1:1883";
const ORDER: &str = "WO-API-1";

/// A running `keyfill serve`.
struct Server {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Server {
    fn start(station: &Station, extra: &[&str]) -> Result<Server> {
        let log = station.home.with_extension(format!("serve-{}.log", keyfill_e2e::rand_u64() as u16));
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend(extra);
        let mut command = station.command(&args);
        command.env("KEYFILL_LOG", "info").stdout(Stdio::null()).stderr(std::fs::File::create(&log)?);
        let child = command.spawn().context("keyfill serve starts")?;
        let mut server = Server { child, base: String::new(), log };
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&server.log).unwrap_or_default();
            if let Some(at) = text.find("serving the API on ") {
                let rest = &text[at + "serving the API on ".len()..];
                server.base = rest.split([' ', ';']).next().unwrap_or_default().to_owned();
                return Ok(server);
            }
            if let Some(status) = server.child.try_wait()? {
                bail!("keyfill serve exited ({status}): {text}");
            }
            ensure!(started.elapsed() < Duration::from_secs(60), "keyfill serve did not start: {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `METHOD PATH` with the token and body given: the status and the JSON answer.
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<(&str, &str)>) -> Result<(u16, Value)> {
        let (status, text) = self.call_text(method, path, token, body)?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).with_context(|| format!("{method} {path} answered {status} {text:?}"))?
        };
        Ok((status, value))
    }

    fn call_text(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<(&str, &str)>,
    ) -> Result<(u16, String)> {
        let mut command = Command::new("curl");
        command.args(["-s", "-S", "-X", method, "-o", "-", "-w", "\n%{http_code}", "--max-time", "30"]);
        if let Some(token) = token {
            command.args(["-H", &format!("Authorization: Bearer {token}")]);
        }
        if let Some((content_type, _)) = body {
            command.args(["-H", &format!("Content-Type: {content_type}"), "--data-binary", "@-"]);
        }
        command.arg(format!("{}{path}", self.base)).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut child = command.spawn().context("curl (installed by scripts/setup)")?;
        if let (Some((_, text)), Some(mut stdin)) = (body, child.stdin.take()) {
            stdin.write_all(text.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        let text = String::from_utf8(output.stdout)?;
        let (body, status) = text.rsplit_once('\n').context("curl's status line")?;
        Ok((status.trim().parse()?, body.to_owned()))
    }

    /// The event stream: each `data:` line as JSON, as it comes.
    fn events(&self, token: &str) -> Result<(Child, mpsc::Receiver<Value>)> {
        let mut child = Command::new("curl")
            .args(["-s", "-N", "-H", &format!("Authorization: Bearer {token}"), &format!("{}/v1/events", self.base)])
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(data) = line.strip_prefix("data:")
                    && let Ok(event) = serde_json::from_str::<Value>(data.trim())
                    && sender.send(event).is_err()
                {
                    break;
                }
            }
        });
        Ok((child, events))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status()?;
        ensure!(status.success(), "kill -TERM failed");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            ensure!(started.elapsed() < Duration::from_secs(60), "keyfill serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(station: &Station, name: &str, scopes: &str) -> Result<String> {
    let output = station.run(&["api", "token", "create", "--name", name, "--scope", scopes])?;
    ensure!(output.status.success(), "token create: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

fn run_ok(station: &Station, args: &[&str]) -> Result<std::process::Output> {
    let output = station.run(args)?;
    ensure!(output.status.success(), "keyfill {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    Ok(output)
}

fn factory_root(station: &Station) -> Result<[u8; 32]> {
    hex::decode(std::fs::read_to_string(station.factory_root_file())?.trim())?
        .try_into()
        .map_err(|_| anyhow::anyhow!("factory root"))
}

/// Polls `path` until `done` accepts the answer.
fn wait_until(server: &Server, path: &str, token: &str, done: impl Fn(&Value) -> bool) -> Result<Value> {
    let started = Instant::now();
    loop {
        let (status, value) = server.call("GET", path, Some(token), None)?;
        ensure!(status == 200, "GET {path}: {status} {value}");
        if done(&value) {
            return Ok(value);
        }
        ensure!(started.elapsed() < Duration::from_secs(120), "GET {path} never got there: {value:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every answer but 2xx is one shape: a code, a message, maybe advice.
fn assert_problem(value: &Value, code: &str) {
    assert_eq!(value["error"], code, "{value}");
    assert!(value["message"].as_str().is_some_and(|m| !m.is_empty()), "{value}");
}

#[test]
fn api_document_served_is_the_committed_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let station = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    let server = Server::start(&station, &[])?;
    let (status, served) = server.call_text("GET", "/openapi.json", None, None)?;
    assert_eq!(status, 200);
    let committed = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json"))?;
    assert!(
        served == committed,
        "docs/openapi.json differs from the served document: `keyfill api openapi > docs/openapi.json`"
    );
    let document: Value = serde_json::from_str(&served)?;
    assert_eq!(document["openapi"], "3.1.0");
    for path in ["/v1/devices", "/v1/jobs", "/v1/orders", "/v1/runs/export", "/v1/events"] {
        assert!(document["paths"][path].is_object(), "{path} documented");
    }
    // And the command that writes it prints the same.
    assert_eq!(String::from_utf8(run_ok(&station, &["api", "openapi"])?.stdout)?, committed);
    Ok(())
}

#[test]
fn api_devices_pages_filters_shows_and_refuses_bad_calls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let farm = Farm::start(dir, "api-dev", 3, factory_root(&station)?)?;
    for device in &farm.devices {
        run_ok(&station, &["provision", "--serial", &device.port.to_string_lossy(), "--qr", &device.payload])?;
    }
    let reader = token(&station, "mes-read", "devices:read")?;
    let other = token(&station, "jobs-only", "jobs:read")?;
    let revoked = token(&station, "old", "devices:read")?;
    let server = Server::start(&station, &[])?;

    // Pages in id order, each pointing at the next.
    let mut ids: Vec<String> = farm.devices.iter().map(|d| d.id.clone()).collect();
    ids.sort();
    let (status, page) = server.call("GET", "/v1/devices?limit=2", Some(&reader), None)?;
    assert_eq!(status, 200, "{page}");
    let listed: Vec<&str> =
        page["devices"].as_array().context("devices")?.iter().filter_map(|d| d["id"].as_str()).collect();
    assert_eq!(listed, [ids[0].as_str(), ids[1].as_str()]);
    assert_eq!(page["next"], ids[1]);
    let (_, last) = server.call("GET", &format!("/v1/devices?limit=2&after={}", ids[1]), Some(&reader), None)?;
    assert_eq!(last["devices"].as_array().map(Vec::len), Some(1));
    assert!(last.get("next").is_none(), "the last page has no next: {last}");
    let (_, provisioned) = server.call("GET", "/v1/devices?state=provisioned", Some(&reader), None)?;
    assert_eq!(provisioned["devices"].as_array().map(Vec::len), Some(3));
    let (_, pending) = server.call("GET", "/v1/devices?state=pending", Some(&reader), None)?;
    assert_eq!(pending["devices"].as_array().map(Vec::len), Some(0));
    // The CLI's device JSON, with history and exports, by name or id.
    let name = &farm.devices[0].name;
    let (status, shown) = server.call("GET", &format!("/v1/devices/{name}"), Some(&reader), None)?;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["state"], "provisioned");
    assert!(shown["history"].as_array().is_some_and(|h| !h.is_empty()) && shown["c2_exports"].is_array());
    let (_, by_id) = server.call("GET", &format!("/v1/devices/{}", farm.devices[0].id), Some(&reader), None)?;
    assert_eq!(by_id["name"], name.as_str());

    // Bad input: 400 with a problem, never a 5xx.
    for bad in [
        "/v1/devices?limit=0",
        "/v1/devices?limit=501",
        "/v1/devices?limit=x",
        "/v1/devices?state=lost",
        "/v1/devices?after=zz",
        "/v1/devices?colour=red",
    ] {
        let (status, problem) = server.call("GET", bad, Some(&reader), None)?;
        assert_eq!(status, 400, "{bad}: {problem}");
        assert_problem(&problem, "bad_request");
    }
    let (status, problem) = server.call("GET", "/v1/devices/no-such-device", Some(&reader), None)?;
    assert_eq!(status, 404);
    assert_problem(&problem, "not_found");
    let (status, problem) = server.call("GET", "/v1/nowhere", Some(&reader), None)?;
    assert_eq!(status, 404);
    assert_problem(&problem, "not_found");
    // No token, a malformed or unknown one, a revoked one: 401; the wrong scope: 403.
    let forged = format!("kf_0000000000000000_{}", "A".repeat(43));
    for presented in [None, Some("nonsense"), Some(forged.as_str())] {
        let (status, problem) = server.call("GET", "/v1/devices", presented, None)?;
        assert_eq!(status, 401, "{presented:?}");
        assert_problem(&problem, "unauthorized");
    }
    let (status, problem) = server.call("GET", "/v1/devices", Some(&other), None)?;
    assert_eq!(status, 403);
    assert!(problem["message"].as_str().unwrap_or("").contains("devices:read"), "{problem}");
    assert_eq!(server.call("GET", "/v1/devices", Some(&revoked), None)?.0, 200);
    run_ok(&station, &["api", "token", "revoke", "old"])?;
    assert_eq!(server.call("GET", "/v1/devices", Some(&revoked), None)?.0, 401, "refused from the next request on");
    // Each request is logged with its token and the operator; tokens themselves never.
    let log = server.log_text();
    assert!(log.contains("API request") && log.contains("mes-read"), "{log}");
    assert!(!log.contains(&reader) && !log.contains(reader.rsplit('_').next().unwrap_or("-")), "no secret in the log");
    // Tokens are kept hashed: the database holds no secret.
    let list = String::from_utf8(run_ok(&station, &["api", "token", "list", "--json"])?.stdout)?;
    assert!(list.contains("mes-read") && !list.contains(&reader));
    let dump = std::fs::read(dir.join("keyfill.db")).unwrap_or_default();
    assert!(!keyfill_e2e::contains_key(&dump, reader.as_bytes()), "a token in the database");
    Ok(())
}

#[test]
fn api_orders_import_list_and_signed_report() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let writer = token(&station, "mes", "orders:read,orders:write")?;
    let reader = token(&station, "viewer", "orders:read")?;
    let server = Server::start(&station, &[])?;
    let csv =
        format!("order_id,device_name,model,serial_number\n{ORDER},api-order-1,,SN-1\n{ORDER},api-order-2,,SN-2\n");
    let (status, imported) = server.call("POST", "/v1/orders", Some(&writer), Some(("text/csv", &csv)))?;
    assert_eq!(status, 201, "{imported}");
    assert_eq!(imported[0]["order"], ORDER);
    assert_eq!(imported[0]["outcome"], "created");
    // The same file again changes nothing; another with the same id is a conflict.
    let (_, again) = server.call("POST", "/v1/orders", Some(&writer), Some(("text/csv", &csv)))?;
    assert_eq!(again[0]["outcome"], "unchanged");
    let changed = format!("order_id,device_name,model,serial_number\n{ORDER},api-order-3,,SN-3\n");
    let (status, problem) = server.call("POST", "/v1/orders", Some(&writer), Some(("text/csv", &changed)))?;
    assert_eq!(status, 409, "{problem}");
    assert_problem(&problem, "conflict");
    // Not an order file, or not a type the API reads: 400, nothing imported.
    for (content_type, body) in
        [("text/csv", "garbage\n\u{1b}[2J"), ("application/json", "{\"not\": \"an array\"}"), ("text/plain", "x")]
    {
        let (status, problem) = server.call("POST", "/v1/orders", Some(&writer), Some((content_type, body)))?;
        assert_eq!(status, 400, "{content_type}: {problem}");
        assert!(!problem["message"].as_str().unwrap_or("").contains('\u{1b}'), "escaped: {problem}");
    }
    // A body over the API's limit: 413 in the same shape, and the server goes on.
    let huge = format!("order_id,device_name,model,serial_number\n{}", "x".repeat(17 * 1024 * 1024));
    let (status, problem) = server.call("POST", "/v1/orders", Some(&writer), Some(("text/csv", &huge)))?;
    assert_eq!(status, 413, "{problem}");
    assert_problem(&problem, "too_large");
    let huge_job = format!("{{\"lane\": \"lane-1\", \"label\": \"{}\"}}", "x".repeat(17 * 1024 * 1024));
    let (status, problem) = server.call("POST", "/v1/jobs", Some(&writer), Some(("application/json", &huge_job)))?;
    assert_eq!(status, 413, "{problem}");
    assert_problem(&problem, "too_large");
    let (status, _) = server.call("POST", "/v1/orders", Some(&reader), Some(("text/csv", &csv)))?;
    assert_eq!(status, 403, "orders:read cannot import");
    let (_, orders) = server.call("GET", "/v1/orders", Some(&reader), None)?;
    assert_eq!(orders.as_array().map(Vec::len), Some(1));
    assert_eq!(orders[0]["expected"], 2);
    assert_eq!(orders[0]["not_started"], 2);
    // The report, signed: the factory root verifies it, as an MES would.
    let (status, signed) = server.call("GET", &format!("/v1/orders/{ORDER}/report"), Some(&reader), None)?;
    assert_eq!(status, 200, "{signed}");
    assert_eq!(signed["report"]["counts"]["expected"], 2);
    let jws = dir.join("report.jws");
    std::fs::write(&jws, signed["jws"].as_str().context("jws")?)?;
    let verified = run_ok(
        &station,
        &[
            "orders",
            "verify-report",
            &jws.to_string_lossy(),
            "--factory-root",
            &station.factory_root_file().to_string_lossy(),
        ],
    )?;
    let payload: Value = serde_json::from_slice(&verified.stdout)?;
    assert_eq!(payload, signed["report"]);
    let (status, _) = server.call("GET", "/v1/orders/WO-NONE/report", Some(&reader), None)?;
    assert_eq!(status, 404);
    Ok(())
}

#[test]
fn api_jobs_key_devices_on_lanes_and_the_event_stream_follows_them() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let farm = Farm::start(dir, "api-job", 2, factory_root(&station)?)?;
    let mut csv = String::from("order_id,device_name,model,serial_number\n");
    for (index, device) in farm.devices.iter().enumerate() {
        csv.push_str(&format!("{ORDER},{},,SN-{index}\n", device.name));
    }
    std::fs::write(dir.join("order.csv"), csv)?;
    run_ok(&station, &["orders", "import", &dir.join("order.csv").to_string_lossy()])?;
    let mut line = format!("order = \"{ORDER}\"\n");
    for (index, device) in farm.devices.iter().enumerate() {
        line.push_str(&format!(
            "\n[[lane]]\nname = \"lane-{}\"\nserial = {:?}\napi = true\n",
            index + 1,
            device.port.display().to_string()
        ));
    }
    std::fs::write(dir.join("line.toml"), line)?;
    let controller = token(&station, "line-3", "jobs:read,jobs:write,events:read,devices:read")?;
    let watcher = token(&station, "watcher", "jobs:read")?;
    let mut server = Server::start(&station, &["--line", &dir.join("line.toml").to_string_lossy()])?;
    let (_, lanes) = server.call("GET", "/v1/lanes", Some(&watcher), None)?;
    assert_eq!(lanes.as_array().map(Vec::len), Some(2), "{lanes}");
    assert_eq!(lanes[0]["labels"], "API");
    let (mut stream, events) = server.events(&controller)?;
    std::thread::sleep(Duration::from_millis(300));

    let mut jobs = Vec::new();
    for (index, device) in farm.devices.iter().enumerate() {
        let body = serde_json::json!({ "lane": format!("lane-{}", index + 1), "label": device.payload }).to_string();
        let (status, job) = server.call("POST", "/v1/jobs", Some(&controller), Some(("application/json", &body)))?;
        assert_eq!(status, 202, "{job}");
        assert_eq!(job["state"], "queued");
        assert_eq!(job["device"]["id"], device.id.as_str());
        jobs.push(job["id"].as_str().context("job id")?.to_owned());
    }
    for (job, device) in jobs.iter().zip(&farm.devices) {
        let done = wait_until(&server, &format!("/v1/jobs/{job}"), &watcher, |j| {
            j["state"] != "queued" && j["state"] != "running"
        })?;
        assert_eq!(done["state"], "provisioned", "{done:#}");
        assert_eq!(done["key_id"].as_str(), device.keystore.key_id().as_deref(), "the key the device holds");
        assert_eq!(done["submitted_by"], "line-3");
    }
    // The stream carried each job's events, tagged with its id, in the line's schema.
    let started = Instant::now();
    let mut provisioned = Vec::new();
    while provisioned.len() < jobs.len() && started.elapsed() < Duration::from_secs(30) {
        if let Ok(event) = events.recv_timeout(Duration::from_secs(1)) {
            assert_eq!(event["schema"], "keyfill.line.v1");
            if event["event"] == "provisioned" {
                provisioned.push(event["job"].as_str().unwrap_or("-").to_owned());
            }
        }
    }
    provisioned.sort();
    let mut expected = jobs.clone();
    expected.sort();
    assert_eq!(provisioned, expected, "a provisioned event per job, with its id");

    // A label for no lane, not a label, the wrong scope, a second label of a keyed device.
    let body = serde_json::json!({ "lane": "lane-9\u{1b}[2J", "label": farm.devices[0].payload }).to_string();
    let (status, problem) = server.call("POST", "/v1/jobs", Some(&controller), Some(("application/json", &body)))?;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["message"], "no lane \"lane-9\\u{1b}[2J\": the lanes are lane-1, lane-2", "escaped once");
    for body in [
        serde_json::json!({ "lane": "lane-1", "label": "KF1:nonsense" }).to_string(),
        serde_json::json!({ "lane": "lane-1" }).to_string(),
        serde_json::json!({ "lane": "lane-1", "label": "x", "extra": 1 }).to_string(),
        "{not json".to_owned(),
    ] {
        let (status, problem) =
            server.call("POST", "/v1/jobs", Some(&controller), Some(("application/json", &body)))?;
        assert_eq!(status, 400, "{body}: {problem}");
        assert_problem(&problem, "bad_request");
    }
    let body = serde_json::json!({ "lane": "lane-1", "label": farm.devices[0].payload }).to_string();
    let (status, _) = server.call("POST", "/v1/jobs", Some(&watcher), Some(("application/json", &body)))?;
    assert_eq!(status, 403, "jobs:read cannot submit");
    let (_, again) = server.call("POST", "/v1/jobs", Some(&controller), Some(("application/json", &body)))?;
    let again = wait_until(&server, &format!("/v1/jobs/{}", again["id"].as_str().unwrap_or("-")), &watcher, |j| {
        j["state"] != "queued" && j["state"] != "running"
    })?;
    assert_eq!(again["state"], "already_provisioned", "{again}");
    let (status, _) = server.call("GET", "/v1/jobs/0000", Some(&watcher), None)?;
    assert_eq!(status, 404);
    let (_, all) = server.call("GET", "/v1/jobs", Some(&watcher), None)?;
    assert_eq!(all.as_array().map(Vec::len), Some(3));
    // SIGTERM with the event stream still open: the stream ends, the server and its line stop.
    assert!(server.stop()?.success(), "{}", server.log_text());
    let started = Instant::now();
    while stream.try_wait()?.is_none() {
        ensure!(started.elapsed() < Duration::from_secs(10), "the event stream stayed open after the stop");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

#[test]
fn api_runs_export_to_c2_and_rotate_over_mqtt() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let name = keyfill_e2e::unique_name("api-run");
    let (station, mut agent) = keyfill_e2e::provisioned_device(dir, Database::sqlite(dir), &name)?;
    let c2 = C2Server::start(dir, CryptoMode::SymKey)?;
    let runner = token(&station, "runner", "runs:read,runs:write")?;
    let reader = token(&station, "reader", "runs:read")?;
    let ca = c2.ca_file();
    let server = Server::start(&station, &["--broker", BROKER, "--c2", &c2.url(), "--c2-ca", &ca.to_string_lossy()])?;

    let (status, run) = server.call("POST", "/v1/runs/export", Some(&runner), Some(("application/json", "{}")))?;
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["kind"], "export");
    let path = format!("/v1/runs/{}", run["id"].as_str().context("run id")?);
    let done = wait_until(&server, &path, &reader, |r| r["state"] != "running")?;
    assert_eq!(done["state"], "finished", "{done:#}");
    assert_eq!(done["devices"][0]["outcome"], "created", "{done:#}");
    assert!(c2.clients()?.contains_key(&name), "C2 holds the client");

    agent.mqtt(BROKER, &[])?;
    let body = serde_json::json!({ "devices": [name] }).to_string();
    let (status, run) = server.call("POST", "/v1/runs/rotation", Some(&runner), Some(("application/json", &body)))?;
    assert_eq!(status, 202, "{run}");
    let path = format!("/v1/runs/{}", run["id"].as_str().context("run id")?);
    let done = wait_until(&server, &path, &reader, |r| r["state"] != "running")?;
    assert_eq!(done["devices"][0]["outcome"], "active", "{done:#}");
    agent.wait_for_key(&done["devices"][0]["key_id"])?;

    // Bad requests and the wrong scope.
    for body in [r#"{"devices": ["no-such-device"]}"#, r#"{"all_provisioned": "yes"}"#, "{}"] {
        let (status, problem) =
            server.call("POST", "/v1/runs/rotation", Some(&runner), Some(("application/json", body)))?;
        assert!(status == 400 || status == 404, "{body}: {status} {problem}");
    }
    let (status, problem) = server.call(
        "POST",
        "/v1/runs/export",
        Some(&runner),
        Some(("application/json", r#"{"since": "yesterday"}"#)),
    )?;
    assert_eq!(status, 400, "{problem}");
    let (status, _) = server.call("POST", "/v1/runs/export", Some(&reader), Some(("application/json", "{}")))?;
    assert_eq!(status, 403);
    let (status, _) = server.call("GET", "/v1/runs/none", Some(&reader), None)?;
    assert_eq!(status, 404);
    Ok(())
}

#[test]
fn api_serve_needs_tls_off_loopback_and_serves_https_with_a_certificate() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let station = Station::init(dir, Database::sqlite(dir))?;
    let output = station.run(&["serve", "--listen", "0.0.0.0:0"])?;
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("without TLS") && stderr.contains("--tls-cert"), "{stderr}");
    // A certificate for 127.0.0.1, as factory IT would make one.
    let (cert, key) = (dir.join("api.crt"), dir.join("api.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
        .args(["-subj", "/CN=keyfill-api", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()?;
    ensure!(made.status.success(), "openssl: {}", String::from_utf8_lossy(&made.stderr));
    let server =
        Server::start(&station, &["--tls-cert", &cert.to_string_lossy(), "--tls-key", &key.to_string_lossy()])?;
    assert!(server.base.starts_with("https://127.0.0.1:"), "{}", server.base);
    let health =
        Command::new("curl").args(["-s", "--cacert"]).arg(&cert).arg(format!("{}/v1/health", server.base)).output()?;
    let health: Value = serde_json::from_slice(&health.stdout).context("health over TLS")?;
    assert_eq!(health["status"], "ok");
    // A client that opens a connection and says nothing holds up no one.
    let _silent = std::net::TcpStream::connect(server.base.trim_start_matches("https://"))?;
    let again = Command::new("curl")
        .args(["-s", "--max-time", "5", "--cacert"])
        .arg(&cert)
        .arg(format!("{}/v1/health", server.base))
        .output()?;
    assert!(again.status.success(), "a second client is served while the first stalls");
    // Plain HTTP to the TLS port is no answer, not a crash.
    let plain = Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("{}/v1/health", server.base.replace("https", "http")))
        .output()?;
    assert!(!plain.status.success());
    let again =
        Command::new("curl").args(["-s", "--cacert"]).arg(&cert).arg(format!("{}/v1/health", server.base)).output()?;
    assert!(again.status.success());
    Ok(())
}

/// The schemathesis that scripts/setup installs (its own virtual environment), or the one
/// `KEYFILL_SCHEMATHESIS` names.
fn schemathesis() -> PathBuf {
    std::env::var_os("KEYFILL_SCHEMATHESIS").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
        home.join(".cache/keyfill-schemathesis/bin/schemathesis")
    })
}

/// Schemathesis generates requests from the served document for a minute: every answer must be
/// one the document describes (status, content type, headers, body schema), no 5xx, and
/// schema-invalid input refused. The event stream, which never ends, is left out; so is the
/// check that every schema-valid body is accepted, since an order file can be well-formed and
/// still refused (a device listed twice).
#[test]
fn api_schemathesis_finds_no_server_error_or_schema_violation() -> Result<()> {
    let tool = schemathesis();
    ensure!(tool.exists(), "{} is missing: run scripts/setup", tool.display());
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let name = keyfill_e2e::unique_name("api-fuzz");
    let (station, _agent) = keyfill_e2e::provisioned_device(dir, Database::sqlite(dir), &name)?;
    std::fs::write(dir.join("order.csv"), format!("order_id,device_name,model,serial_number\n{ORDER},{name},,SN-1\n"))?;
    run_ok(&station, &["orders", "import", &dir.join("order.csv").to_string_lossy()])?;
    let all = keyfill_station::api::token::Scope::join(&keyfill_station::api::token::Scope::ALL);
    let token = token(&station, "schemathesis", &all)?;
    let server = Server::start(&station, &["--broker", BROKER])?;
    let seconds = std::env::var("KEYFILL_SCHEMATHESIS_SECONDS").unwrap_or_else(|_| "60".into());
    let output = Command::new(&tool)
        .args(["run", &format!("{}/openapi.json", server.base), "-H", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance", "--exclude-path", "/v1/events"])
        .args(["--max-time", &seconds, "--workers", "2", "--seed", "1", "--output-sanitize", "true"])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .context("schemathesis runs")?;
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    let log = server.log_text();
    assert!(!log.contains("panicked"), "{log}");
    assert!(!log.contains(&token), "no token in the log");
    Ok(())
}
