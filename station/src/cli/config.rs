//! The configuration files on the command line: each setting becomes the default of the options
//! it stands for, so clap's own order (a flag, then its environment variable, then the default)
//! gives flag > env > user file > system file > built-in default; and `keyfill config show`.

use super::Cli;
use anyhow::Result;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, Subcommand};
use keyfill_formats::printable;
use keyfill_station::config::{Config, ConfigError, SETTINGS, Setting};
use keyfill_station::db::redact_url;
use serde::Serialize;

/// The options each setting stands for: a command's path from the top (empty: a global option)
/// and the option's id.
const TARGETS: &[(&str, &[&str], &str)] = &[
    ("home", &[], "home"),
    ("db", &[], "db"),
    ("operator", &[], "operator"),
    ("card_module", &[], "card_module"),
    ("log_format", &[], "log_format"),
    ("reply_timeout", &[], "reply_timeout"),
    ("confirm_timeout", &[], "confirm_timeout"),
    ("lease_secs", &[], "lease_secs"),
    ("link.baud", &["provision"], "baud"),
    ("link.baud", &["devices", "reconcile"], "baud"),
    ("link.card_wait", &["provision"], "card_wait"),
    ("link.card_wait", &["devices", "reconcile"], "card_wait"),
    ("provision.require_order", &["provision"], "require_order"),
    ("mqtt.broker", &["rotate"], "broker"),
    ("mqtt.broker", &["doctor"], "broker"),
    ("mqtt.inflight", &["rotate"], "mqtt_inflight"),
    ("rotation.window", &["rotate"], "window"),
    ("c2.url", &["export", "c2"], "url"),
    ("c2.url", &["import", "bundle"], "c2"),
    ("c2.url", &["doctor"], "c2"),
    ("c2.ca", &["export", "c2"], "ca"),
    ("c2.ca", &["import", "bundle"], "ca"),
    ("c2.timeout", &["export", "c2"], "timeout"),
    ("c2.timeout", &["import", "bundle"], "timeout"),
    ("c2.concurrency", &["export", "c2"], "concurrency"),
    ("c2.concurrency", &["import", "bundle"], "concurrency"),
    ("c2.max_attempts", &["export", "c2"], "max_attempts"),
    ("c2.max_attempts", &["import", "bundle"], "max_attempts"),
    ("mqtt.broker", &["serve"], "broker"),
    ("c2.url", &["serve"], "c2"),
    ("c2.ca", &["serve"], "c2_ca"),
    ("api.listen", &["serve"], "listen"),
    ("api.tls_cert", &["serve"], "tls_cert"),
    ("api.tls_key", &["serve"], "tls_key"),
    ("label.size", &["label"], "size"),
    ("label.dpi", &["label"], "dpi"),
];

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print each setting's effective value and where it came from (a flag, an environment
    /// variable, the user's or the system's file with its line, or the default).
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Print the files read, in order (the later wins), and whether each exists.
    Paths,
}

/// The command line with every setting's environment variable, and with `config`'s values as
/// defaults (`None`: the built-in defaults only, as the manual pages and completions show them).
pub fn command(config: Option<&Config>) -> clap::Command {
    let mut command = Cli::command();
    for (key, path, id) in TARGETS {
        let Some(setting) = keyfill_station::config::setting_of(key) else { continue };
        let value = config.and_then(|config| config.get(key)).map(|entry| entry.value.to_string());
        command = at_path(command, path, &|sub: clap::Command| {
            sub.mut_arg(*id, |mut arg| {
                if let Some(env) = setting.env {
                    arg = arg.env(env);
                }
                match &value {
                    Some(value) => arg.default_value(value.clone()),
                    None => arg,
                }
            })
        });
    }
    command
}

fn at_path(command: clap::Command, path: &[&str], change: &dyn Fn(clap::Command) -> clap::Command) -> clap::Command {
    match path.split_first() {
        None => change(command),
        Some((name, rest)) => command.mut_subcommand(*name, |sub| at_path(sub, rest, change)),
    }
}

/// Reads the files; when they are broken, a command that needs no settings still runs (help,
/// version, completions, manual pages) and any other stops on the file's error.
pub fn load(args: &[std::ffi::OsString]) -> Result<Config, ConfigError> {
    match Config::load_default() {
        Ok(config) => Ok(config),
        Err(error) if needs_no_settings(args) => {
            eprintln!("warning: {} (ignored by this command)", printable(&error.to_string()));
            Ok(Config::default())
        }
        Err(error) => Err(error),
    }
}

fn needs_no_settings(args: &[std::ffi::OsString]) -> bool {
    let words: Vec<&str> = args.iter().skip(1).filter_map(|arg| arg.to_str()).collect();
    words.iter().any(|word| matches!(*word, "--help" | "-h" | "--version" | "-V"))
        || words.iter().find(|word| !word.starts_with('-')).is_some_and(|first| {
            matches!(*first, "help" | "completions" | "man") || (*first == "config" && words.contains(&"paths"))
        })
}

#[derive(Serialize)]
struct Shown {
    key: &'static str,
    /// `None`: not set, and no default.
    value: Option<String>,
    /// flag, env, user file, system file, default or unset.
    source: &'static str,
    /// The flag, the environment variable or the file and line.
    from: Option<String>,
}

pub fn show(config: &Config, matches: &ArgMatches, json: bool) -> Result<()> {
    let pristine = command(None);
    let home = super::effective_home(matches);
    let rows: Vec<Shown> =
        SETTINGS.iter().map(|setting| shown(setting, config, matches, &pristine, home.as_deref())).collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    let width = rows.iter().map(|row| row.key.len()).max().unwrap_or(0);
    let value_width =
        rows.iter().filter_map(|row| row.value.as_ref()).map(|v| v.chars().count()).max().unwrap_or(0).min(48);
    for row in &rows {
        let value = row.value.as_deref().map_or_else(|| "-".to_owned(), |value| printable(value).into_owned());
        let from = row.from.as_deref().map(|from| format!(" {}", printable(from))).unwrap_or_default();
        println!("{:width$}  {value:value_width$}  {}{from}", row.key, row.source);
    }
    Ok(())
}

fn shown(
    setting: &'static Setting,
    config: &Config,
    matches: &ArgMatches,
    pristine: &clap::Command,
    home: Option<&std::path::Path>,
) -> Shown {
    let redact = |value: String| if setting.key == "db" { redact_url(&value) } else { value };
    let global = TARGETS.iter().find(|(key, path, _)| *key == setting.key && path.is_empty()).map(|(_, _, id)| *id);
    // A global option: clap knows whether a flag or the environment set it.
    if let Some(id) = global
        && matches.value_source(id) == Some(ValueSource::CommandLine)
    {
        let value = matches.get_raw(id).and_then(|mut values| values.next()).map(|v| v.to_string_lossy().into_owned());
        return Shown {
            key: setting.key,
            value: value.map(redact),
            source: "flag",
            from: Some(format!("--{}", flag_name(pristine, id))),
        };
    }
    if let Some((env, value)) = setting.env.and_then(|env| std::env::var(env).ok().map(|value| (env, value))) {
        return Shown { key: setting.key, value: Some(redact(value)), source: "env", from: Some(env.to_owned()) };
    }
    if let Some(entry) = config.get(setting.key) {
        let source = match entry.scope {
            keyfill_station::config::Scope::System => "system file",
            keyfill_station::config::Scope::User => "user file",
        };
        return Shown {
            key: setting.key,
            value: Some(redact(entry.value.to_string())),
            source,
            from: Some(format!("{}:{}", entry.path.display(), entry.line)),
        };
    }
    let default = match setting.key {
        "home" => home.map(|home| home.display().to_string()),
        "db" => home.map(keyfill_station::home::default_db_url),
        _ => built_in_default(setting.key, pristine)
            .or_else(|| matches!(setting.kind, keyfill_station::config::Kind::Bool).then(|| "false".to_owned())),
    };
    Shown { key: setting.key, source: if default.is_some() { "default" } else { "unset" }, value: default, from: None }
}

/// The default the command line gives the first option a setting stands for.
fn built_in_default(key: &str, pristine: &clap::Command) -> Option<String> {
    let (_, path, id) = TARGETS.iter().find(|(k, _, _)| *k == key)?;
    let mut command = pristine;
    for name in *path {
        command = command.find_subcommand(name)?;
    }
    let arg = command.get_arguments().find(|arg| arg.get_id() == *id)?;
    arg.get_default_values().first().map(|value| value.to_string_lossy().into_owned())
}

fn flag_name(command: &clap::Command, id: &str) -> String {
    command.get_arguments().find(|arg| arg.get_id() == id).and_then(|arg| arg.get_long()).unwrap_or(id).to_owned()
}

pub fn paths() {
    let system = keyfill_station::config::system_path();
    let user = keyfill_station::config::user_path();
    for (path, scope) in [(Some(system), "system"), (user, "user")] {
        match path {
            Some(path) => {
                let state = if path.exists() { "read" } else { "absent" };
                println!("{scope}  {}  ({state})", printable(&path.display().to_string()));
            }
            None => println!("{scope}  -  (no home directory)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_every_target_is_an_option_of_the_command_line() {
        let command = Cli::command();
        for (key, path, id) in TARGETS {
            assert!(keyfill_station::config::setting_of(key).is_some(), "{key} is a setting");
            let mut sub = &command;
            for name in *path {
                sub = sub.find_subcommand(name).unwrap_or_else(|| panic!("{key}: no command {path:?}"));
            }
            assert!(sub.get_arguments().any(|arg| arg.get_id() == *id), "{key}: no option {id} in {path:?}");
        }
    }
}
