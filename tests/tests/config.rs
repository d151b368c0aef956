//! `keyfill.toml` as a station's IT sets it up: a system file, a user's file over it, the
//! environment over both and a flag over everything; `keyfill config show` says which won; a
//! mistake in a file stops every command with the file, the line and the key.

use anyhow::{Context, Result};
use keyfill_e2e::{Database, Station, binary};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Two configuration files in a scratch folder, and `keyfill` run with them.
struct Files {
    _dir: tempfile::TempDir,
    system: PathBuf,
    /// `$XDG_CONFIG_HOME`: the user's file is `keyfill/keyfill.toml` in it.
    xdg: PathBuf,
}

impl Files {
    fn new(system: &str, user: &str) -> Result<Files> {
        let dir = tempfile::tempdir()?;
        let system_path = dir.path().join("etc-keyfill.toml");
        let xdg = dir.path().join("xdg");
        std::fs::create_dir_all(xdg.join("keyfill"))?;
        std::fs::write(&system_path, system)?;
        std::fs::write(xdg.join("keyfill/keyfill.toml"), user)?;
        Ok(Files { _dir: dir, system: system_path, xdg })
    }

    fn user(&self) -> PathBuf {
        self.xdg.join("keyfill/keyfill.toml")
    }

    /// `keyfill ARGS` with these files and no KEYFILL_ variable but `env`.
    fn keyfill(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Output> {
        let mut command = Command::new(binary("keyfill"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("KEYFILL_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .env("KEYFILL_SYSTEM_CONFIG", &self.system)
            .env("XDG_CONFIG_HOME", &self.xdg)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null());
        command.output().context("keyfill runs")
    }

    /// `keyfill config show --json`, as key → (value, source, from).
    fn show(&self, args: &[&str], env: &[(&str, &str)]) -> Result<Vec<serde_json::Value>> {
        let mut all = args.to_vec();
        all.extend(["config", "show", "--json"]);
        let output = self.keyfill(&all, env)?;
        anyhow::ensure!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        Ok(serde_json::from_slice(&output.stdout)?)
    }
}

fn row<'a>(rows: &'a [serde_json::Value], key: &str) -> (&'a str, &'a str, &'a str) {
    let row = rows.iter().find(|row| row["key"] == key).unwrap_or_else(|| panic!("no {key} in {rows:?}"));
    (row["value"].as_str().unwrap_or("-"), row["source"].as_str().unwrap_or("?"), row["from"].as_str().unwrap_or(""))
}

fn at(path: &Path, line: usize) -> String {
    format!("{}:{line}", path.display())
}

#[test]
fn config_precedence_is_flag_then_env_then_user_file_then_system_file_then_default() -> Result<()> {
    let files = Files::new(
        "home = \"/srv/system-home\"\nreply_timeout = 30\nconfirm_timeout = 40\n[c2]\nurl = \"https://c2.factory:8888\"\n\
         [label]\nsize = \"62x29\"\n",
        "# the lab laptop\nreply_timeout = 25\n[c2]\nurl = \"https://c2.lab:8888\"\n",
    )?;
    // Each layer alone, from the bottom.
    let rows = files.show(&[], &[])?;
    assert_eq!(row(&rows, "lease_secs").1, "default");
    assert_eq!(row(&rows, "confirm_timeout"), ("40", "system file", at(&files.system, 3).as_str()));
    assert_eq!(row(&rows, "label.size"), ("62x29", "system file", at(&files.system, 7).as_str()));
    assert_eq!(row(&rows, "reply_timeout"), ("25", "user file", at(&files.user(), 2).as_str()));
    assert_eq!(row(&rows, "c2.url"), ("https://c2.lab:8888", "user file", at(&files.user(), 4).as_str()));
    assert_eq!(row(&rows, "home"), ("/srv/system-home", "system file", at(&files.system, 1).as_str()));
    assert_eq!(
        row(&rows, "db"),
        ("sqlite:///srv/system-home/keyfill.db", "default", ""),
        "the default follows the home"
    );
    assert_eq!(row(&rows, "mqtt.broker"), ("-", "unset", ""));
    // The environment over the files, a flag over the environment.
    let env =
        [("KEYFILL_REPLY_TIMEOUT", "12"), ("KEYFILL_C2_URL", "https://c2.env:8888"), ("KEYFILL_HOME", "/srv/env-home")];
    let rows = files.show(&[], &env)?;
    assert_eq!(row(&rows, "reply_timeout"), ("12", "env", "KEYFILL_REPLY_TIMEOUT"));
    assert_eq!(row(&rows, "c2.url"), ("https://c2.env:8888", "env", "KEYFILL_C2_URL"));
    assert_eq!(row(&rows, "home"), ("/srv/env-home", "env", "KEYFILL_HOME"));
    let rows = files.show(&["--reply-timeout", "7", "--home", "/srv/flag-home"], &env)?;
    assert_eq!(row(&rows, "reply_timeout"), ("7", "flag", "--reply-timeout"));
    assert_eq!(row(&rows, "home"), ("/srv/flag-home", "flag", "--home"));
    // A password in a database URL is not shown.
    let rows = files.show(&["--db", "postgres://keyfill:s3cret@db.factory/keyfill"], &[])?;
    assert!(!row(&rows, "db").0.contains("s3cret"), "{rows:?}");
    // The text form: one line per setting with its source.
    let output = files.keyfill(&["config", "show"], &[])?;
    let text = String::from_utf8(output.stdout)?;
    let line = text.lines().find(|l| l.starts_with("c2.url ")).context("c2.url line")?;
    assert!(
        line.contains("https://c2.lab:8888") && line.contains(&format!("user file {}", at(&files.user(), 4))),
        "{line}"
    );
    Ok(())
}

#[test]
fn config_values_reach_the_commands_that_use_them() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let station = Station::init(dir.path(), Database::sqlite(dir.path()))?;
    let home = station.home.to_string_lossy().into_owned();
    // The system file names the home and the broker: `doctor` uses both without a flag.
    let files = Files::new(&format!("home = \"{home}\"\n[mqtt]\nbroker = \"mqtt://127.0.0.1:1883\"\n"), "")?;
    let doctor = ["doctor", "--json", "--skip", "serial,pcsc,bluetooth,printer,c2"];
    let output = files.keyfill(&doctor, &[])?;
    let findings: Vec<serde_json::Value> =
        serde_json::from_slice(&output.stdout).with_context(|| String::from_utf8_lossy(&output.stderr).into_owned())?;
    let status = |check: &str| findings.iter().find(|f| f["check"] == check).map(|f| f["status"].clone());
    assert_eq!(status("home"), Some("pass".into()), "{findings:#?}");
    assert_eq!(status("broker"), Some("pass".into()), "{findings:#?}");
    // A flag over the file: a broker where nothing listens.
    let mut flagged = doctor.to_vec();
    flagged.extend(["--broker", "mqtt://127.0.0.1:9"]);
    let output = files.keyfill(&flagged, &[])?;
    let findings: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout)?;
    let broker = findings.iter().find(|f| f["check"] == "broker").context("broker check")?;
    assert_eq!(broker["status"], "fail", "{broker}");
    assert!(!output.status.success());
    // A setting a command requires comes from the file: `rotate` needs a broker.
    let files = Files::new("", "[mqtt]\nbroker = \"mqtt://127.0.0.1:1883\"\n")?;
    let help = files.keyfill(&["rotate", "--help"], &[])?;
    let help = String::from_utf8(help.stdout)?;
    assert!(help.contains("[env: KEYFILL_BROKER=]") || help.contains("KEYFILL_BROKER"), "{help}");
    assert!(help.contains("[default: mqtt://127.0.0.1:1883]"), "{help}");
    Ok(())
}

#[test]
fn config_mistakes_stop_every_command_with_file_line_and_key() -> Result<()> {
    let files = Files::new("home = \"/srv/keyfill\"\n", "\n[c2]\ntimeout = \"thirty\"\n")?;
    let output = files.keyfill(&["devices", "list"], &[])?;
    let stderr = String::from_utf8(output.stderr)?;
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: c2.timeout: expected an integer from 1 to 600, found a string",
            at(&files.user(), 3)
        )),
        "{stderr}"
    );
    let files = Files::new("[label]\nsise = \"50x30\"\n", "")?;
    let output = files.keyfill(&["config", "show"], &[])?;
    let stderr = String::from_utf8(output.stderr)?;
    assert!(
        stderr.contains(&format!("{}: unknown key `label.sise` (did you mean `label.size`?)", at(&files.system, 2))),
        "{stderr}"
    );
    assert_eq!(output.status.code(), Some(2));
    // What needs no settings still works, with a warning: help, completions, the paths.
    let output = files.keyfill(&["completions", "bash"], &[])?;
    assert!(output.status.success() && !output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("label.sise"));
    let output = files.keyfill(&["config", "paths"], &[])?;
    let stdout = String::from_utf8(output.stdout)?;
    assert!(stdout.contains(&files.system.display().to_string()) && stdout.contains("(read)"), "{stdout}");
    // After the fix, the same command runs.
    std::fs::write(&files.system, "[label]\nsize = \"50x30\"\n")?;
    assert!(files.keyfill(&["config", "show"], &[])?.status.success());
    Ok(())
}
