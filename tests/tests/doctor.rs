//! `keyfill doctor` on a station as it is set up, and on one where each usual thing went wrong:
//! every problem named with its fix, the exit status 1 only then.

use anyhow::{Context, Result};
use keyfill_e2e::{Database, PtyPair, Station};
use std::os::unix::fs::PermissionsExt;

/// Checks that need hardware or services this machine may lack.
const NOT_HERE: &str = "pcsc,bluetooth,printer";

fn findings(output: &std::process::Output) -> Result<Vec<serde_json::Value>> {
    serde_json::from_slice(&output.stdout).with_context(|| format!("{}", String::from_utf8_lossy(&output.stderr)))
}

fn finding<'a>(all: &'a [serde_json::Value], check: &str) -> &'a serde_json::Value {
    all.iter().find(|f| f["check"] == check).unwrap_or_else(|| panic!("no {check} check in {all:?}"))
}

#[test]
fn doctor_passes_on_a_station_that_is_set_up() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let station = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    let pty = PtyPair::new(dir.path())?;
    let port = pty.station_side.to_string_lossy().into_owned();
    let output = station.run(&[
        "doctor",
        "--json",
        "--serial",
        &port,
        "--broker",
        "mqtt://127.0.0.1:1883",
        "--skip",
        NOT_HERE,
    ])?;
    let all = findings(&output)?;
    assert!(output.status.success(), "{all:#?}");
    for check in ["home", "certificate", "clock", "database", "serial", "broker"] {
        assert_eq!(finding(&all, check)["status"], "pass", "{all:#?}");
    }
    assert_eq!(finding(&all, "c2")["status"], "skip", "no C2 was given");
    assert!(finding(&all, "certificate")["detail"].as_str().unwrap_or("").contains("more days"));
    // Text for a terminal, one line per check.
    let text = station.run(&["doctor", "--serial", &port, "--skip", NOT_HERE])?;
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.lines().any(|l| l.starts_with("ok") && l.contains("database")), "{stdout}");
    Ok(())
}

#[test]
fn doctor_names_each_problem_and_how_to_fix_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let station = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    std::fs::set_permissions(&station.home, std::fs::Permissions::from_mode(0o755))?;
    // A database the station never migrated: an empty PostgreSQL database.
    let empty = Database::postgres()?;
    let home = station.home.to_string_lossy().into_owned();
    let mut command = std::process::Command::new(keyfill_e2e::binary("keyfill"));
    command.args(["--home", &home, "--db", empty.url()]).args([
        "doctor",
        "--json",
        "--serial",
        "/dev/ttyNOSUCHPORT0",
        "--broker",
        "mqtt://127.0.0.1:1",
        "--c2",
        "https://127.0.0.1:2",
        "--skip",
        NOT_HERE,
    ]);
    let output = command.output()?;
    let all = findings(&output)?;
    assert_eq!(output.status.code(), Some(1), "{all:#?}");
    let expect = |check: &str, detail: &str, fix: &str| {
        let found = finding(&all, check);
        assert_eq!(found["status"], "fail", "{check}: {found}");
        assert!(found["detail"].as_str().unwrap_or("").contains(detail), "{check}: {found}");
        assert!(found["fix"].as_str().unwrap_or("").contains(fix), "{check}: {found}");
    };
    expect("home", "open to other users (mode 755)", "chmod 700");
    expect("database", "schema version 0", "migrates the database");
    expect("serial", "/dev/ttyNOSUCHPORT0 does not exist", "plug the adapter in");
    expect("broker", "cannot connect to 127.0.0.1:1", "--broker");
    expect("c2", "cannot connect to 127.0.0.1:2", "--c2");
    for check in ["pcsc", "bluetooth", "printer"] {
        assert_eq!(finding(&all, check)["status"], "skip");
    }
    // Fixed as told, the home passes again.
    std::fs::set_permissions(&station.home, std::fs::Permissions::from_mode(0o700))?;
    let again = station.run(&["doctor", "--json", "--skip", &format!("{NOT_HERE},serial")])?;
    let all = findings(&again)?;
    assert_eq!(finding(&all, "home")["status"], "pass");
    assert!(again.status.success(), "{all:#?}");
    // A station home that is not one, and a SQLite database that does not exist.
    let nowhere = dir.path().join("nowhere");
    let output = std::process::Command::new(keyfill_e2e::binary("keyfill"))
        .args(["--home", &nowhere.to_string_lossy(), "doctor", "--json", "--skip", NOT_HERE])
        .output()?;
    let all = findings(&output)?;
    assert!(finding(&all, "home")["fix"].as_str().unwrap_or("").contains("keyfill init"));
    assert!(finding(&all, "database")["detail"].as_str().unwrap_or("").contains("does not exist yet"));
    assert!(!nowhere.exists(), "the doctor created nothing");
    Ok(())
}
