use super::*;

fn parse(text: &str) -> Result<ConfigFile, ConfigError> {
    ConfigFile::parse(Path::new("/etc/keyfill/keyfill.toml"), Scope::System, text)
}

fn value(file: &ConfigFile, key: &str) -> Option<(String, usize)> {
    file.entries.get(key).map(|entry| (entry.value.to_string(), entry.line))
}

#[test]
fn config_reads_top_level_keys_and_tables_with_their_lines() {
    let file = parse(
        "# a station\nhome = \"/srv/keyfill\"\nreply_timeout = 15\n\n[c2]\nurl = \"https://c2.example:8888\"\n\
         timeout = 0x1e\n[label]\nsize = \"62x29\"\n",
    );
    let file = file.expect("a good file");
    assert_eq!(value(&file, "home"), Some(("/srv/keyfill".into(), 2)));
    assert_eq!(value(&file, "reply_timeout"), Some(("15".into(), 3)));
    assert_eq!(value(&file, "c2.url"), Some(("https://c2.example:8888".into(), 6)));
    assert_eq!(value(&file, "c2.timeout"), Some(("30".into(), 7)));
    assert_eq!(value(&file, "label.size"), Some(("62x29".into(), 9)));
    // Under [label], a dotted key is label.provision.require_order: not a setting.
    let error = parse("[label]\nprovision.require_order = true\n").expect_err("inside [label]");
    assert!(error.to_string().contains(":2: unknown key `label.provision`"), "{error}");
    let file = parse("provision.require_order = true\nc2 = { ca = \"/etc/ca.pem\" }\n").expect("dotted and inline");
    assert_eq!(value(&file, "provision.require_order"), Some(("true".into(), 1)));
    assert_eq!(value(&file, "c2.ca"), Some(("/etc/ca.pem".into(), 2)));
}

#[test]
fn config_errors_name_the_file_the_line_and_the_key() {
    let error = |text: &str| parse(text).expect_err("refused").to_string();
    assert_eq!(
        error("home = \"/x\"\n[c2]\nurll = \"https://c2\"\n"),
        "/etc/keyfill/keyfill.toml:3: unknown key `c2.urll` (did you mean `c2.url`?)"
    );
    assert_eq!(
        error("url = \"https://c2\"\n"),
        "/etc/keyfill/keyfill.toml:1: unknown key `url` (did you mean `c2.url`?)"
    );
    assert_eq!(
        error("\n\nreply_timeout = 900\n"),
        "/etc/keyfill/keyfill.toml:3: reply_timeout: 900 is out of range: expected an integer from 1 to 600"
    );
    assert_eq!(
        error("reply_timeout = \"10\"\n"),
        "/etc/keyfill/keyfill.toml:1: reply_timeout: expected an integer from 1 to 600, found a string"
    );
    assert_eq!(
        error("[mqtt]\nbroker = \"tcp://broker:1883\"\n"),
        "/etc/keyfill/keyfill.toml:2: mqtt.broker: expected a URL starting with mqtt:// or mqtts://"
    );
    assert_eq!(
        error("log_format = \"yaml\"\n"),
        "/etc/keyfill/keyfill.toml:1: log_format: expected one of \"text\", \"json\""
    );
    assert!(error("[label]\nsize = \"5x3000\"\n").starts_with("/etc/keyfill/keyfill.toml:2: label.size: "));
    assert!(error("home = \"\"\n").contains(":1: home: empty"));
    assert_eq!(
        error("c2 = \"https://c2\"\n"),
        "/etc/keyfill/keyfill.toml:1: unknown key `c2` (`c2` is a table: write `[c2]` above its keys)"
    );
    assert_eq!(
        error("[mqttt]\nbroker = \"mqtt://b\"\n"),
        "/etc/keyfill/keyfill.toml:1: unknown key `mqttt` (did you mean `mqtt`?)"
    );
    assert_eq!(
        error("[mqtt]\nwindow = 5\n"),
        "/etc/keyfill/keyfill.toml:2: unknown key `mqtt.window` (did you mean `rotation.window`?)"
    );
    // Not TOML at all: the line of the mistake.
    assert!(error("home = \"/x\"\nreply_timeout = \n").starts_with("/etc/keyfill/keyfill.toml:2: not TOML: "));
    assert!(error("home = \"/x\"\nhome = \"/y\"\n").starts_with("/etc/keyfill/keyfill.toml:2: not TOML: "));
}

#[test]
fn config_escapes_what_it_quotes_from_the_file() {
    let error = parse("\"ho\\u001b[2Jme\" = 1\n").expect_err("unknown").to_string();
    assert!(!error.chars().any(char::is_control), "{error:?}");
    let error = parse("home = \"/x\\u0007y\"\n").expect_err("bell").to_string();
    assert!(error.ends_with("home: holds the control character U+0007"), "{error}");
}

#[test]
fn config_user_file_wins_over_the_system_file_key_by_key() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let system = dir.path().join("system.toml");
    let user = dir.path().join("user.toml");
    std::fs::write(&system, "home = \"/srv/keyfill\"\n[c2]\nurl = \"https://c2.factory:8888\"\n")?;
    std::fs::write(&user, "\n[c2]\nurl = \"https://c2.lab:8888\"\n")?;
    let config = Config::load(&system, Some(&user))?;
    let home = config.get("home").ok_or("home")?;
    assert_eq!((home.value.as_str(), home.scope, home.line), ("/srv/keyfill", Scope::System, 1));
    let url = config.get("c2.url").ok_or("url")?;
    assert_eq!(
        (url.value.as_str(), url.scope, url.path.as_path(), url.line),
        ("https://c2.lab:8888", Scope::User, user.as_path(), 3)
    );
    assert!(config.get("db").is_none());
    // No files: nothing set, no error.
    assert!(Config::load(&dir.path().join("none"), None)?.get("home").is_none());
    Ok(())
}

#[test]
fn config_refuses_files_too_large_or_writable_by_anyone() -> Result<(), Box<dyn std::error::Error>> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("keyfill.toml");
    std::fs::write(&path, "#".repeat(MAX_FILE_BYTES as usize + 1))?;
    assert!(matches!(ConfigFile::read(&path, Scope::User), Err(ConfigError::TooLarge { .. })));
    std::fs::write(&path, "home = \"/x\"\n")?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    let error = ConfigFile::read(&path, Scope::User).expect_err("world-writable");
    assert!(error.to_string().contains("chmod o-w"), "{error}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
    assert!(ConfigFile::read(&path, Scope::User)?.is_some());
    Ok(())
}
