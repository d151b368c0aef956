//! What a packaged `keyfill` ships besides its binaries: shell completions and man pages,
//! generated from the command-line definitions and checked with the shells and `man` themselves.

use anyhow::{Context, Result, bail};
use keyfill_e2e::binary;
use std::process::Command;

fn keyfill(args: &[&str]) -> Result<String> {
    let output = Command::new(binary("keyfill")).args(args).output().context("keyfill runs")?;
    if !output.status.success() {
        bail!("keyfill {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Runs `program` with `args`, and its standard output.
fn run(program: &str, args: &[&str]) -> Result<String> {
    let output =
        Command::new(program).args(args).output().with_context(|| format!("{program} (installed by scripts/setup)"))?;
    if !output.status.success() {
        bail!("{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn package_completions_complete_commands_and_options_in_bash_zsh_and_fish() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let script = |shell: &str| -> Result<String> {
        let path = dir.path().join(format!("keyfill.{shell}"));
        std::fs::write(&path, keyfill(&["completions", shell])?)?;
        Ok(path.to_string_lossy().into_owned())
    };
    // bash: the completion function itself, as bash calls it on Tab.
    let bash = script("bash")?;
    let complete = |words: &str, current: usize, word: &str, previous: &str| {
        let program = format!(
            "source {bash}; COMP_WORDS=({words}); COMP_CWORD={current}; _keyfill keyfill {word} {previous}; \
             printf '%s\\n' \"${{COMPREPLY[@]}}\""
        );
        run("bash", &["-c", &program])
    };
    assert_eq!(complete("keyfill oper", 1, "oper", "keyfill")?.trim(), "operators");
    assert!(complete("keyfill operators add x --ro", 4, "--ro", "x")?.lines().any(|l| l == "--role"));
    assert!(complete("keyfill custody ''", 2, "''", "custody")?.lines().any(|l| l == "enable"));
    // fish: its own completion query.
    let fish = script("fish")?;
    let offered = run("fish", &["-c", &format!("source {fish}; complete -C 'keyfill oper'")])?;
    assert!(offered.starts_with("operators\t"), "{offered}");
    let offered = run("fish", &["-c", &format!("source {fish}; complete -C 'keyfill audit '")])?;
    for sub in ["verify", "export", "checkpoint"] {
        assert!(offered.lines().any(|l| l.starts_with(&format!("{sub}\t"))), "{offered}");
    }
    // zsh: the script parses, and defines the completion function.
    let zsh = script("zsh")?;
    run("zsh", &["-n", &zsh])?;
    assert!(std::fs::read_to_string(&zsh)?.contains("#compdef keyfill"));
    Ok(())
}

#[test]
fn package_man_pages_render_for_every_command() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("man1");
    let printed = keyfill(&["man", "--out", &out.to_string_lossy()])?;
    let mut pages: Vec<String> = std::fs::read_dir(&out)?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    pages.sort();
    assert!(printed.starts_with(&format!("{} manual pages", pages.len())), "{printed}");
    for expected in ["keyfill.1", "keyfill-provision.1", "keyfill-operators-add.1", "keyfill-audit-verify.1"] {
        assert!(pages.iter().any(|page| page == expected), "{expected} in {pages:?}");
    }
    for page in &pages {
        let path = out.join(page);
        let output = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .context("man (man-db, installed by scripts/setup)")?;
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{page}: {}", String::from_utf8_lossy(&output.stderr));
        assert!(text.contains("NAME") && text.contains("SYNOPSIS"), "{page}:\n{text}");
    }
    let add = run("man", &["-l", &out.join("keyfill-operators-add.1").to_string_lossy()])?;
    assert!(add.contains("keyfill operators add") && add.contains("security-officer"), "{add}");
    Ok(())
}
