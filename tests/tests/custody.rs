//! Named operators, roles and dual control, through the `keyfill` binary on a station taken
//! from a shared passphrase to named operators (`keyfill custody enable`) with a device keyed
//! before: each role does exactly its operations, one officer alone cannot do what two must,
//! a removed operator cannot log in, wrong passphrases are slowed down and logged.

use anyhow::{Context, Result, bail};
use keyfill_e2e::{Database, Station, provisioned_device, runtime};
use keyfill_station::db::Inventory;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The fixture's operators: name, role, passphrase.
const OPERATORS: [(&str, &str, &str); 5] = [
    ("anna", "security-officer", "anna's long passphrase"),
    ("ben", "security-officer", "ben's long passphrase"),
    ("olga", "operator", "olga's long passphrase"),
    ("sam", "supervisor", "sam's long passphrase"),
    ("aud", "auditor", "aud's long passphrase"),
];

struct Fixture {
    station: Station,
    files: PathBuf,
    device: String,
    payload: String,
}

/// `--officer anna --officer ben` with their passphrase files, for `init` and `custody enable`.
fn two_officers<'a>(a: &'a str, b: &'a str) -> [&'a str; 8] {
    ["--officer", "anna", "--officer", "ben", "--officer-passphrase-file", a, "--officer-passphrase-file", b]
}

fn passphrase_file(files: &Path, name: &str) -> String {
    files.join(format!("{name}.pass")).to_string_lossy().into_owned()
}

impl Fixture {
    /// A legacy station with one device keyed, taken to named operators, with every role added.
    fn new(dir: &Path, db: Database) -> Result<Self> {
        let device = keyfill_e2e::unique_name("custody-device");
        let (station, agent) = provisioned_device(dir, db, &device)?;
        let files = dir.join("passphrases");
        std::fs::create_dir_all(&files)?;
        for (name, _, passphrase) in OPERATORS {
            std::fs::write(passphrase_file(&files, name), format!("{passphrase}\n"))?;
        }
        std::fs::write(passphrase_file(&files, "wrong"), "not the passphrase\n")?;
        let fixture = Fixture { station, files, device, payload: agent.payload.clone() };
        let (a, b) = (passphrase_file(&fixture.files, "anna"), passphrase_file(&fixture.files, "ben"));
        let enabled = fixture.station.run(&[&["custody", "enable"][..], &two_officers(&a, &b)].concat())?;
        expect_ok(&enabled, "custody enable")?;
        for (name, role, _) in &OPERATORS[2..] {
            let added = fixture.officers(&[
                "operators",
                "add",
                name,
                "--role",
                role,
                "--new-passphrase-file",
                &fixture.pass(name),
            ])?;
            expect_ok(&added, "operators add")?;
        }
        Ok(fixture)
    }

    fn pass(&self, name: &str) -> String {
        passphrase_file(&self.files, name)
    }

    /// `keyfill --as NAME ARGS`.
    fn as_(&self, name: &str, args: &[&str]) -> Result<Output> {
        let pass = self.pass(name);
        let mut all = vec!["--as", name, "--operator-passphrase-file", &pass];
        all.extend(args);
        self.station.run(&all)
    }

    /// `keyfill --as anna --approver ben ARGS`: two security officers.
    fn officers(&self, args: &[&str]) -> Result<Output> {
        let (a, b) = (self.pass("anna"), self.pass("ben"));
        let mut all = vec!["--as", "anna", "--operator-passphrase-file", &a, "--approver", "ben"];
        all.extend(["--approver-passphrase-file", &b]);
        all.extend(args);
        self.station.run(&all)
    }

    fn audit_entries(&self) -> Result<Vec<serde_json::Value>> {
        let output = self.as_("aud", &["audit", "export", "--jsonl"])?;
        expect_ok(&output, "audit export")?;
        String::from_utf8(output.stdout)?.lines().map(|line| Ok(serde_json::from_str(line)?)).collect()
    }
}

fn expect_ok(output: &Output, what: &str) -> Result<()> {
    if !output.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Whether the command was refused for the operator's role (rather than run, and perhaps
/// failed for another reason).
fn forbidden(output: &Output, name: &str) -> bool {
    let text = stderr(output);
    !output.status.success()
        && (text.contains(&format!("{name} is a ")) || text.contains(&format!("{name} is an ")))
        && text.contains(" takes a")
}

#[test]
fn custody_migration_keeps_every_key_and_retires_the_shared_passphrase() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Fixture::new(dir.path(), Database::sqlite(dir.path()))?;
    let home = &fixture.station.home;
    assert!(!home.join("master-key.json").exists(), "the passphrase-sealed master key is gone");
    assert!(home.join("custody.json").exists());
    // The shared passphrase (KEYFILL_PASSPHRASE, set for every command) unlocks nothing now.
    let legacy = fixture.station.run(&["devices", "list"])?;
    assert!(!legacy.status.success());
    assert!(stderr(&legacy).contains("log in with --as NAME"), "{}", stderr(&legacy));
    // Every key still opens, and the device keyed before is still provisioned.
    let keys = fixture.as_("sam", &["keys", "check-duplicates", "--json"])?;
    expect_ok(&keys, "keys check-duplicates")?;
    let devices = fixture.as_("sam", &["devices", "list", "--json"])?;
    let devices: Vec<serde_json::Value> = serde_json::from_slice(&devices.stdout)?;
    let device = devices.iter().find(|d| d["name"] == fixture.device.as_str()).context("the device")?;
    assert_eq!(device["state"], "provisioned");
    // The chain is intact, and records who did what under their own name.
    let verify = fixture.as_("aud", &["audit", "verify"])?;
    expect_ok(&verify, "audit verify")?;
    let entries = fixture.audit_entries()?;
    let kinds = |kind: &str| entries.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(kinds("custody_enabled"), 1);
    assert_eq!(kinds("operator_added"), 5);
    assert!(kinds("dual_control_approved") >= 4, "enable and three additions");
    assert!(entries.iter().any(|e| e["kind"] == "login" && e["operator"] == "sam"));
    let approval = entries.iter().find(|e| e["kind"] == "dual_control_approved").context("an approval")?;
    assert!(approval["detail"].as_str().unwrap_or("").contains("approved by anna, ben"), "{approval}");
    // The roster as an auditor sees it.
    let list = fixture.as_("aud", &["operators", "list", "--json"])?;
    let list: Vec<serde_json::Value> = serde_json::from_slice(&list.stdout)?;
    assert_eq!(list.len(), 5);
    assert!(list.iter().all(|o| o["state"] == "active"), "{list:?}");
    // No passphrase of anyone's, nor the unlock secret, in what was printed.
    let transcript = fixture.station.transcript.borrow();
    for (_, _, passphrase) in OPERATORS {
        assert!(!transcript.windows(passphrase.len()).any(|w| w == passphrase.as_bytes()));
    }
    Ok(())
}

#[test]
fn custody_each_role_does_exactly_its_operations() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Fixture::new(dir.path(), Database::sqlite(dir.path()))?;
    let new_pass = fixture.pass("olga");
    let bundle_out = dir.path().join("bundle.kfb").to_string_lossy().into_owned();
    // (command, the role that may run it; None: every role)
    let commands: Vec<(Vec<&str>, Option<&str>)> = vec![
        (vec!["devices", "list"], None),
        (vec!["operators", "list"], None),
        (vec!["provision", "--serial", "/nonexistent/port", "--qr", &fixture.payload], Some("operator")),
        (vec!["devices", "reconcile", "--serial", "/nonexistent/port", "no-such-device"], Some("operator")),
        (vec!["label", &fixture.device, "--out", "/nonexistent/dir/label.png"], Some("operator")),
        (vec!["devices", "abandon", "no-such-device", "--reason", "test", "--yes"], Some("supervisor")),
        (vec!["keys", "check-duplicates"], Some("supervisor")),
        (vec!["export", "bundle", "--recipient", "/nonexistent.pub", "--out", &bundle_out], Some("supervisor")),
        (vec!["audit", "verify"], Some("auditor")),
        (vec!["audit", "export", "--jsonl"], Some("auditor")),
        (
            vec!["operators", "add", "erin", "--role", "operator", "--new-passphrase-file", &new_pass],
            Some("security-officer"),
        ),
        (vec!["custody", "policy", "--approvals", "2"], Some("security-officer")),
    ];
    for (name, role, _) in OPERATORS.iter().skip(1) {
        for (command, allowed) in &commands {
            // Dual-control commands carry the second officer's approval (anna's, for ben).
            let pass = fixture.pass("anna");
            let mut args = vec!["--approver", "anna", "--approver-passphrase-file", pass.as_str()];
            args.extend(command.iter().copied());
            let output = fixture.as_(name, &args)?;
            let may = allowed.is_none_or(|allowed| allowed == *role);
            assert_eq!(!forbidden(&output, name), may, "{name} ({role}) running {command:?}: {}", stderr(&output));
        }
    }
    Ok(())
}

#[test]
fn custody_one_officer_alone_cannot_do_a_dual_control_operation() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Fixture::new(dir.path(), Database::sqlite(dir.path()))?;
    let pass = fixture.pass("olga");
    let alone =
        fixture.as_("anna", &["operators", "add", "erin", "--role", "operator", "--new-passphrase-file", &pass])?;
    assert!(!alone.status.success());
    assert!(stderr(&alone).contains("takes the approval of 2 security officers"), "{}", stderr(&alone));
    // An approver who is not an officer does not count.
    let sam = fixture.pass("sam");
    let mut args = vec!["--approver", "sam", "--approver-passphrase-file", &sam];
    args.extend(["operators", "add", "erin", "--role", "operator", "--new-passphrase-file", &pass]);
    let with_supervisor = fixture.as_("anna", &args)?;
    assert!(stderr(&with_supervisor).contains("sam is not a security officer"), "{}", stderr(&with_supervisor));
    // Nor does the same officer twice.
    let anna = fixture.pass("anna");
    let twice =
        fixture.as_("anna", &["--approver", "anna", "--approver-passphrase-file", &anna, "custody", "policy"])?;
    assert!(stderr(&twice).contains("named twice"), "{}", stderr(&twice));
    // A supervisor's bundle export takes two officers besides.
    let out = dir.path().join("b.kfb").to_string_lossy().into_owned();
    let mut args = vec!["--approver", "anna", "--approver-passphrase-file", &anna];
    args.extend(["export", "bundle", "--recipient", "/nonexistent.pub", "--out", &out]);
    let export = fixture.as_("sam", &args)?;
    assert!(stderr(&export).contains("takes the approval of 2 security officers"), "{}", stderr(&export));
    // Nothing was added.
    let list = fixture.as_("aud", &["operators", "list", "--json"])?;
    assert!(!String::from_utf8_lossy(&list.stdout).contains("erin"));
    Ok(())
}

#[test]
fn custody_a_removed_operator_cannot_log_in_and_the_unlock_secret_changes() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Fixture::new(dir.path(), Database::sqlite(dir.path()))?;
    let before: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture.station.home.join("custody.json"))?)?;
    expect_ok(&fixture.officers(&["operators", "remove", "olga"])?, "operators remove")?;
    let refused = fixture.as_("olga", &["devices", "list"])?;
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("operator olga was removed"), "{}", stderr(&refused));
    let after: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture.station.home.join("custody.json"))?)?;
    assert_ne!(before["check"], after["check"], "a new unlock secret");
    assert!(!after["wraps"].as_array().context("wraps")?.iter().any(|w| w["operator"] == "olga"));
    // The others still unlock the station, with the new secret.
    expect_ok(&fixture.as_("sam", &["keys", "check-duplicates"])?, "keys check-duplicates")?;
    // The last officers cannot be removed: dual control would be lost.
    let last = fixture.officers(&["operators", "remove", "ben"])?;
    assert!(stderr(&last).contains("would leave 1 security officers"), "{}", stderr(&last));
    // A row changed in the database (a removed operator revived, or promoted) is refused.
    runtime()?.block_on(async {
        let inventory = Inventory::open(fixture.station.db.url()).await?;
        sqlx::query("UPDATE operators SET removed_at = NULL WHERE name = 'olga'").execute(inventory.pool()).await?;
        sqlx::query("UPDATE operators SET role = 'security-officer' WHERE name = 'sam'")
            .execute(inventory.pool())
            .await?;
        inventory.close().await;
        Ok::<_, anyhow::Error>(())
    })?;
    let revived = fixture.as_("olga", &["devices", "list"])?;
    assert!(stderr(&revived).contains("not signed by a station"), "{}", stderr(&revived));
    let promoted = fixture.as_("sam", &["devices", "list"])?;
    assert!(stderr(&promoted).contains("not signed by a station"), "{}", stderr(&promoted));
    Ok(())
}

#[test]
fn custody_wrong_passphrases_are_rate_limited_and_logged() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Fixture::new(dir.path(), Database::sqlite(dir.path()))?;
    let wrong = fixture.pass("wrong");
    let attempt = || fixture.station.run(&["--as", "olga", "--operator-passphrase-file", &wrong, "devices", "list"]);
    for expected in ["1 in a row)", "2 in a row)", "3 in a row; logins are refused for the next 30 seconds"] {
        let output = attempt()?;
        assert!(!output.status.success());
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
    }
    // Refused untried, even with the right passphrase, while the back-off lasts.
    let locked = fixture.as_("olga", &["devices", "list"])?;
    assert!(stderr(&locked).contains("too many wrong passphrases for operator olga"), "{}", stderr(&locked));
    // Once it is over (its end moved into the past), the right passphrase logs in and resets it.
    runtime()?.block_on(async {
        let inventory = Inventory::open(fixture.station.db.url()).await?;
        sqlx::query("UPDATE operators SET locked_until = 0 WHERE name = 'olga'").execute(inventory.pool()).await?;
        inventory.close().await;
        Ok::<_, anyhow::Error>(())
    })?;
    expect_ok(&fixture.as_("olga", &["devices", "list"])?, "a login after the back-off")?;
    let again = attempt()?;
    assert!(stderr(&again).contains("1 in a row)"), "{}", stderr(&again));
    // An unknown operator is refused and noted too.
    let unknown = fixture.station.run(&["--as", "mallory", "--operator-passphrase-file", &wrong, "devices", "list"])?;
    assert!(stderr(&unknown).contains("there is no operator mallory"), "{}", stderr(&unknown));
    // Each attempt is in the audit log once a station is unlocked (the auditor's export does not
    // unlock, so a supervisor's command does first).
    expect_ok(&fixture.as_("sam", &["keys", "check-duplicates"])?, "keys check-duplicates")?;
    let entries = fixture.audit_entries()?;
    let count =
        |kind: &str, operator: &str| entries.iter().filter(|e| e["kind"] == kind && e["operator"] == operator).count();
    assert_eq!(count("login_failed", "olga"), 4);
    assert_eq!(count("login_refused", "olga"), 1);
    assert_eq!(count("login_failed", "mallory"), 1);
    Ok(())
}

#[test]
fn custody_an_unlock_quorum_takes_two_officers_after_a_restart() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Fixture::new(dir.path(), Database::sqlite(dir.path()))?;
    expect_ok(&fixture.officers(&["custody", "policy", "--approvals", "2", "--unlock-quorum", "2"])?, "policy")?;
    let alone = fixture.as_("sam", &["keys", "check-duplicates"])?;
    assert!(stderr(&alone).contains("needs 2 security officers to unlock"), "{}", stderr(&alone));
    // Reading needs no unlock.
    expect_ok(&fixture.as_("olga", &["devices", "list"])?, "devices list")?;
    let (a, b) = (fixture.pass("anna"), fixture.pass("ben"));
    let mut args = vec!["--approver", "anna", "--approver-passphrase-file", &a, "--approver", "ben"];
    args.extend(["--approver-passphrase-file", &b, "keys", "check-duplicates"]);
    expect_ok(&fixture.as_("sam", &args)?, "keys check-duplicates with two officers present")?;
    let show = fixture.station.run(&["custody", "show"])?;
    assert!(String::from_utf8_lossy(&show.stdout).contains("2 security officers' logins"));
    Ok(())
}

#[test]
fn custody_in_postgres_stations_start_under_named_operators_from_init() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let files = dir.path().join("passphrases");
    std::fs::create_dir_all(&files)?;
    for (name, _, passphrase) in OPERATORS {
        std::fs::write(passphrase_file(&files, name), passphrase)?;
    }
    let station = Station {
        home: dir.path().join("station-home"),
        db: Database::postgres()?,
        transcript: Default::default(),
        env: Vec::new(),
    };
    let (a, b) = (passphrase_file(&files, "anna"), passphrase_file(&files, "ben"));
    let init = station.run(&[&["init"][..], &two_officers(&a, &b)].concat())?;
    expect_ok(&init, "init with officers")?;
    let list = station.run(&["--as", "anna", "--operator-passphrase-file", &a, "operators", "list"])?;
    expect_ok(&list, "operators list")?;
    assert!(String::from_utf8_lossy(&list.stdout).contains("security-officer"));
    Ok(())
}

#[test]
fn custody_hsm_named_operators_on_a_token_station_replace_its_pin() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let hsm = keyfill_e2e::SoftHsm::new(dir.path())?;
    let station = Station::init_in_token(dir.path(), Database::sqlite(dir.path()), &hsm, &[])?;
    let files = dir.path().join("passphrases");
    std::fs::create_dir_all(&files)?;
    for (name, _, passphrase) in OPERATORS {
        std::fs::write(passphrase_file(&files, name), passphrase)?;
    }
    let (a, b) = (passphrase_file(&files, "anna"), passphrase_file(&files, "ben"));
    let enabled = station.run(&[&["custody", "enable"][..], &two_officers(&a, &b)].concat())?;
    expect_ok(&enabled, "custody enable on a token station")?;
    // The PIN everyone knew no longer logs in to the token (OpenSC's pkcs11-tool says so).
    assert!(hsm.list_objects().is_err(), "the old PIN still logs in");
    // The officers' logins unlock the station through the token.
    let p = passphrase_file(&files, "sam");
    let added = station.run(&[
        "--as",
        "anna",
        "--operator-passphrase-file",
        &a,
        "--approver",
        "ben",
        "--approver-passphrase-file",
        &b,
        "operators",
        "add",
        "sam",
        "--role",
        "supervisor",
        "--new-passphrase-file",
        &p,
    ])?;
    expect_ok(&added, "operators add on a token station")?;
    expect_ok(&station.run(&["--as", "sam", "--operator-passphrase-file", &p, "keys", "check-duplicates"])?, "keys")?;
    Ok(())
}

#[test]
fn custody_hsm_an_operator_with_a_card_needs_the_card_and_its_pin() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Fixture::new(dir.path(), Database::sqlite(dir.path()))?;
    // The card: a SoftHSM2 token, through the same PKCS#11 path as OpenSC's module for a PC/SC card.
    let card = keyfill_e2e::SoftHsm::new(&dir.path().join("card"))?;
    let conf = card.conf.to_string_lossy().into_owned();
    let env = [("SOFTHSM2_CONF", conf.as_str())];
    let pin = dir.path().join("card.pin");
    std::fs::write(&pin, keyfill_e2e::TOKEN_PIN)?;
    let wrong_pin = dir.path().join("wrong.pin");
    std::fs::write(&wrong_pin, "00000000")?;
    let (pin, wrong_pin) = (pin.to_string_lossy().into_owned(), wrong_pin.to_string_lossy().into_owned());
    let module = ["--card-module", keyfill_e2e::SOFTHSM_MODULE];
    let (a, b, c) = (fixture.pass("anna"), fixture.pass("ben"), fixture.pass("olga"));
    let mut add = vec!["--as", "anna", "--operator-passphrase-file", &a, "--approver", "ben"];
    add.extend(["--approver-passphrase-file", &b, "operators", "add", "carla", "--role", "operator"]);
    add.extend(["--new-passphrase-file", &c, "--card", &card.label, "--new-card-pin-file", &pin]);
    add.extend(module);
    expect_ok(&fixture.station.run_env(&add, &env)?, "operators add with a card")?;
    // The card made the key and keeps it (OpenSC's pkcs11-tool lists it).
    let objects = card.objects()?;
    let key = objects.iter().find(|o| o.starts_with("Private Key") && o.contains("keyfill operator carla"));
    assert!(key.is_some_and(|key| key.contains("never extractable")), "{objects:?}");
    let login = |card_pin: Option<&str>| {
        let mut args = vec!["--as", "carla", "--operator-passphrase-file", c.as_str()];
        args.extend(module);
        if let Some(card_pin) = card_pin {
            args.extend(["--card-pin-file", card_pin]);
        }
        args.extend(["devices", "list"]);
        fixture.station.run_env(&args, &env)
    };
    // The passphrase alone does not log in; nor does the card with a wrong PIN (counted).
    let without = login(None)?;
    assert!(stderr(&without).contains("no card PIN for carla"), "{}", stderr(&without));
    let wrong = login(Some(&wrong_pin))?;
    assert!(stderr(&wrong).contains("card of operator carla refused its PIN (1 failed"), "{}", stderr(&wrong));
    expect_ok(&login(Some(&pin))?, "a login with the card")?;
    // The card's key is bound to the signed record: another key under the label is refused.
    runtime()?.block_on(async {
        let inventory = Inventory::open(fixture.station.db.url()).await?;
        let other =
            format!(r#"{{"token":"{}","key":"keyfill operator carla","public":"{}"}}"#, card.label, "11".repeat(32));
        sqlx::query("UPDATE operators SET card = $1 WHERE name = 'carla'")
            .bind(other)
            .execute(inventory.pool())
            .await?;
        inventory.close().await;
        Ok::<_, anyhow::Error>(())
    })?;
    let forged = login(Some(&pin))?;
    assert!(stderr(&forged).contains("not signed by a station"), "{}", stderr(&forged));
    Ok(())
}

/// Tokens are made by two security officers, as operators are; `keyfill serve --as NAME` acts
/// within NAME's role whatever a token's scopes, and says so.
#[test]
fn custody_api_tokens_need_dual_control_and_serve_acts_within_its_operators_role() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let fixture = Fixture::new(dir.path(), Database::sqlite(dir.path()))?;
    let create = ["api", "token", "create", "--name", "mes", "--scope", "devices:read,orders:write"];
    let alone = fixture.as_("anna", &create)?;
    assert!(!alone.status.success(), "one officer alone cannot make a token");
    assert!(forbidden(&fixture.as_("olga", &create)?, "olga"), "an operator cannot make a token");
    let made = fixture.officers(&create)?;
    expect_ok(&made, "api token create")?;
    let token = String::from_utf8(made.stdout)?.trim().to_owned();
    let entries = fixture.audit_entries()?;
    assert!(entries.iter().any(|e| e["kind"] == "api_token_created"), "the token's making is audited");

    // Served as the auditor: reading is allowed, importing an order is not the auditor's to do.
    let pass = fixture.pass("aud");
    let log = dir.path().join("serve.log");
    let mut server = fixture
        .station
        .command(&["--as", "aud", "--operator-passphrase-file", &pass, "serve", "--listen", "127.0.0.1:0"])
        .env("KEYFILL_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let base = (|| -> Result<String> {
        for _ in 0..600 {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(at) = text.find("serving the API on ") {
                let rest = &text[at + "serving the API on ".len()..];
                return Ok(rest.split([' ', ';']).next().unwrap_or_default().to_owned());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        bail!("keyfill serve did not start: {}", std::fs::read_to_string(&log).unwrap_or_default())
    })();
    let curl = |args: &[&str]| -> Result<(String, String)> {
        let output = std::process::Command::new("curl")
            .args(["-s", "-o", "-", "-w", "\n%{http_code}", "-H", &format!("Authorization: Bearer {token}")])
            .args(args)
            .output()?;
        let text = String::from_utf8(output.stdout)?;
        let (body, status) = text.rsplit_once('\n').context("status")?;
        Ok((status.to_owned(), body.to_owned()))
    };
    let result = (|| -> Result<()> {
        let base = base?;
        let (status, body) = curl(&[&format!("{base}/v1/devices")])?;
        assert_eq!(status, "200", "{body}");
        let csv = "order_id,device_name,model,serial_number\nWO-AUD,aud-device,,SN-1\n";
        let (status, body) =
            curl(&["-H", "Content-Type: text/csv", "--data-binary", csv, &format!("{base}/v1/orders")])?;
        assert_eq!(status, "403", "{body}");
        assert!(body.contains("operator aud serving the API may not do this"), "{body}");
        Ok(())
    })();
    let _ = server.kill();
    let _ = server.wait();
    result
}
