//! The Debian packages `scripts/package` builds: what they hold (any user), and, as root, that
//! they install, run and go away again on this machine. The install test leaves the machine as it
//! found it even when it fails: a guard purges the packages and removes the user, the group and
//! the state directory they created (which the packages themselves keep on purge, by design).

use anyhow::{Context, Result, bail, ensure};
use keyfill_e2e::packaged_binaries_dir;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Runs a command to completion, failing with its standard error unless it succeeds.
fn run(command: &mut Command) -> Result<Output> {
    let shown = format!("{command:?}");
    let output = command.output().with_context(|| format!("cannot run {shown}"))?;
    if !output.status.success() {
        bail!(
            "{shown}: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

fn stdout(command: &mut Command) -> Result<String> {
    Ok(String::from_utf8(run(command)?.stdout)?)
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The two packages, built by `scripts/package` from this profile's binaries into a folder of
/// the test's own; compressed with gzip -1 rather than xz, which takes half a minute on a debug
/// build.
struct Packages {
    _dir: tempfile::TempDir,
    keyfill: PathBuf,
    agent: PathBuf,
}

/// A database URL in the packaging account's configuration and environment: the packages must
/// not carry it (completions and manual pages are generated in an empty environment).
const PACKAGER_SETTING: &str = "postgres://packager-only@db.invalid/keyfill";

fn build_packages() -> Result<Packages> {
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join(".config/keyfill"))?;
    std::fs::write(home.join(".config/keyfill/keyfill.toml"), format!("db = \"{PACKAGER_SETTING}\"\n"))?;
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"))?.trim().to_owned();
    run(Command::new("bash")
        .arg(workspace().join("scripts/package"))
        .arg("--bin-dir")
        .arg(packaged_binaries_dir())
        .arg("--out")
        .arg(dir.path())
        .env("HOME", &home)
        .env_remove("XDG_CONFIG_HOME")
        .env("KEYFILL_DB", PACKAGER_SETTING)
        .env("DPKG_DEB_COMPRESSOR_TYPE", "gzip")
        .env("DPKG_DEB_COMPRESSOR_LEVEL", "1"))
    .context("scripts/package (dpkg-dev, installed by scripts/setup)")?;
    let keyfill = dir.path().join(format!("keyfill_{VERSION}_{arch}.deb"));
    let agent = dir.path().join(format!("keyfill-agent_{VERSION}_{arch}.deb"));
    ensure!(keyfill.is_file() && agent.is_file(), "scripts/package did not write {keyfill:?} and {agent:?}");
    Ok(Packages { _dir: dir, keyfill, agent })
}

fn field(deb: &Path, name: &str) -> Result<String> {
    Ok(stdout(Command::new("dpkg-deb").arg("--field").arg(deb).arg(name))?.trim().to_owned())
}

/// `dpkg-deb --contents`: each path (without the leading `.`, directories ending in `/`) with its
/// mode string and owner.
fn contents(deb: &Path) -> Result<BTreeMap<String, (String, String)>> {
    let listing = stdout(Command::new("dpkg-deb").arg("--contents").arg(deb))?;
    let mut entries = BTreeMap::new();
    for line in listing.lines() {
        let columns: Vec<&str> = line.split_whitespace().collect();
        ensure!(columns.len() >= 6, "odd dpkg-deb --contents line: {line}");
        let path = columns[5].strip_prefix('.').unwrap_or(columns[5]).to_owned();
        entries.insert(path, (columns[0].to_owned(), columns[1].to_owned()));
    }
    Ok(entries)
}

/// The packages that hold the shared libraries `binary` links (its ELF `NEEDED` entries).
fn linked_library_packages(binary: &Path) -> Result<Vec<Vec<String>>> {
    let dynamic = stdout(Command::new("readelf").arg("--dynamic").arg(binary))?;
    let mut owners = Vec::new();
    for line in dynamic.lines().filter(|line| line.contains("(NEEDED)")) {
        let soname = line.rsplit('[').next().and_then(|s| s.strip_suffix(']')).context("a NEEDED line")?;
        let found = stdout(Command::new("dpkg-query").arg("--search").arg(format!("*/{soname}")))?;
        // "libdbus-1-3:amd64: /lib/x86_64-linux-gnu/libdbus-1.so.3", "libc6:amd64, libc6:i386: …"
        let packages = found
            .lines()
            .filter_map(|line| line.split_once(": /").map(|(packages, _)| packages))
            .flat_map(|packages| packages.split(", "))
            .map(|package| package.split(':').next().unwrap_or(package).trim().to_owned())
            .collect();
        owners.push(packages);
    }
    ensure!(!owners.is_empty(), "{binary:?} links no shared library?");
    Ok(owners)
}

/// The names in a Depends field (alternatives and version constraints dropped).
fn depends_names(depends: &str) -> Vec<String> {
    depends
        .split([',', '|'])
        .filter_map(|item| item.split_whitespace().next())
        .map(|name| name.split(':').next().unwrap_or(name).to_owned())
        .collect()
}

/// The rule lines of a udev rules file, each checked for udev's syntax: comma-separated
/// `KEY[{attribute}]OPERATOR"value"` pairs, keys and operators udev knows. Debian 12's udevadm
/// (systemd 252) has no `verify`; this catches what a typo would break.
fn check_udev_rules(text: &str) -> Result<()> {
    const KEYS: &[&str] = &[
        "ACTION",
        "DEVPATH",
        "KERNEL",
        "KERNELS",
        "NAME",
        "SYMLINK",
        "SUBSYSTEM",
        "SUBSYSTEMS",
        "DRIVER",
        "DRIVERS",
        "ATTR",
        "ATTRS",
        "SYSCTL",
        "ENV",
        "CONST",
        "TAG",
        "TAGS",
        "TEST",
        "PROGRAM",
        "RESULT",
        "OWNER",
        "GROUP",
        "MODE",
        "SECLABEL",
        "RUN",
        "LABEL",
        "GOTO",
        "IMPORT",
        "OPTIONS",
    ];
    for (number, line) in text.lines().enumerate().map(|(i, line)| (i + 1, line.trim())) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut rest = line;
        while !rest.is_empty() {
            let key_end = rest.find(['=', '!', '+', '-', ':']).with_context(|| format!("line {number}: {line}"))?;
            let key = &rest[..key_end];
            let name = key.split('{').next().unwrap_or(key);
            ensure!(KEYS.contains(&name), "line {number}: unknown key {key:?}");
            ensure!(
                key == name || (key.ends_with('}') && key.matches('{').count() == 1),
                "line {number}: bad attribute in {key:?}"
            );
            rest = &rest[key_end..];
            let operator = ["==", "!=", "+=", "-=", ":=", "="]
                .into_iter()
                .find(|op| rest.starts_with(op))
                .with_context(|| format!("line {number}: no operator after {key}"))?;
            rest =
                rest[operator.len()..].strip_prefix('"').with_context(|| format!("line {number}: unquoted value"))?;
            let value_end = rest.find('"').with_context(|| format!("line {number}: unterminated value"))?;
            rest = rest[value_end + 1..].trim_start();
            if let Some(next) = rest.strip_prefix(',') {
                rest = next.trim_start();
                ensure!(!rest.is_empty(), "line {number}: trailing comma");
            } else {
                ensure!(rest.is_empty(), "line {number}: expected a comma before {rest:?}");
            }
        }
    }
    Ok(())
}

#[test]
fn package_deb_contents_metadata_and_data_files() -> Result<()> {
    let packages = build_packages()?;

    // Control fields: the workspace's version, this machine's architecture, and dependencies
    // that name the package of every shared library the binaries link.
    let arch = stdout(Command::new("dpkg").arg("--print-architecture"))?.trim().to_owned();
    for deb in [&packages.keyfill, &packages.agent] {
        assert_eq!(field(deb, "Version")?, VERSION);
        assert_eq!(field(deb, "Architecture")?, arch);
        assert!(field(deb, "Installed-Size")?.parse::<u64>()? > 0);
        assert!(field(deb, "Maintainer")?.contains('@'));
    }
    let bins = packaged_binaries_dir();
    for (deb, binaries) in
        [(&packages.keyfill, &["keyfill", "keyfill-gui"][..]), (&packages.agent, &["keyfill-agent"][..])]
    {
        let depends = field(deb, "Depends")?;
        let names = depends_names(&depends);
        for binary in binaries {
            for owners in linked_library_packages(&bins.join(binary))? {
                assert!(
                    owners.iter().any(|owner| names.contains(owner)),
                    "{binary} links a library of {owners:?}: {depends}"
                );
            }
        }
        assert!(names.iter().any(|name| name == "libc6"), "{depends}");
    }
    let depends = field(&packages.keyfill, "Depends")?;
    for needed in ["libpcsclite1", "libdbus-1-3", "acl"] {
        assert!(depends_names(&depends).iter().any(|name| name == needed), "keyfill Depends: {depends}");
    }
    assert!(field(&packages.keyfill, "Recommends")?.contains("pcscd"));

    // Files, modes and owners.
    let keyfill = contents(&packages.keyfill)?;
    let expected = [
        ("/usr/bin/keyfill", "-rwxr-xr-x"),
        ("/usr/bin/keyfill-gui", "-rwxr-xr-x"),
        ("/usr/share/applications/keyfill.desktop", "-rw-r--r--"),
        ("/usr/share/icons/hicolor/scalable/apps/keyfill.svg", "-rw-r--r--"),
        ("/usr/lib/udev/rules.d/60-keyfill.rules", "-rw-r--r--"),
        ("/usr/lib/sysusers.d/keyfill.conf", "-rw-r--r--"),
        ("/usr/share/bash-completion/completions/keyfill", "-rw-r--r--"),
        ("/usr/share/zsh/vendor-completions/_keyfill", "-rw-r--r--"),
        ("/usr/share/fish/vendor_completions.d/keyfill.fish", "-rw-r--r--"),
        ("/usr/share/man/man1/keyfill.1.gz", "-rw-r--r--"),
        ("/usr/share/man/man1/keyfill-provision.1.gz", "-rw-r--r--"),
        ("/usr/share/man/man1/keyfill-operators-add.1.gz", "-rw-r--r--"),
        ("/usr/share/doc/keyfill/copyright", "-rw-r--r--"),
        ("/usr/share/doc/keyfill/changelog.gz", "-rw-r--r--"),
        ("/etc/keyfill/", "drwxr-xr-x"),
    ];
    for (path, mode) in expected {
        let entry = keyfill.get(path).with_context(|| format!("{path} in keyfill: {:?}", keyfill.keys()))?;
        assert_eq!((entry.0.as_str(), entry.1.as_str()), (mode, "root/root"), "{path}");
    }
    assert!(!keyfill.keys().any(|path| path.starts_with("/etc/keyfill/") && path != "/etc/keyfill/"), "{keyfill:?}");
    assert!(keyfill.iter().all(|(_, (_, owner))| owner == "root/root"));
    // A page for every command, as `keyfill man` writes them.
    let pages = keyfill.keys().filter(|path| path.starts_with("/usr/share/man/man1/") && path.ends_with(".1.gz"));
    let written = tempfile::tempdir()?;
    run(Command::new(bins.join("keyfill")).arg("man").arg("--out").arg(written.path()))?;
    assert_eq!(pages.count(), std::fs::read_dir(written.path())?.count());
    assert!(
        !keyfill.keys().any(|path| path.starts_with("/usr/share/man/") && path.ends_with(".1")),
        "uncompressed page"
    );

    let agent = contents(&packages.agent)?;
    let expected = [
        ("/usr/bin/keyfill-agent", "-rwxr-xr-x"),
        ("/usr/lib/systemd/system/keyfill-agent.service", "-rw-r--r--"),
        ("/usr/lib/sysusers.d/keyfill-agent.conf", "-rw-r--r--"),
        ("/etc/default/keyfill-agent", "-rw-r--r--"),
        ("/usr/share/doc/keyfill-agent/copyright", "-rw-r--r--"),
        ("/usr/share/doc/keyfill-agent/changelog.gz", "-rw-r--r--"),
        ("/usr/share/doc/keyfill-agent/README.Debian", "-rw-r--r--"),
    ];
    for (path, mode) in expected {
        let entry = agent.get(path).with_context(|| format!("{path} in keyfill-agent: {:?}", agent.keys()))?;
        assert_eq!((entry.0.as_str(), entry.1.as_str()), (mode, "root/root"), "{path}");
    }
    assert!(agent.iter().all(|(_, (_, owner))| owner == "root/root"));

    // The data files, unpacked and checked by the tools that read them.
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("root");
    for deb in [&packages.keyfill, &packages.agent] {
        run(Command::new("dpkg-deb").arg("--extract").arg(deb).arg(&root))?;
    }
    run(Command::new("desktop-file-validate").arg(root.join("usr/share/applications/keyfill.desktop")))
        .context("desktop-file-validate (desktop-file-utils, installed by scripts/setup)")?;
    let svg = std::fs::read_to_string(root.join("usr/share/icons/hicolor/scalable/apps/keyfill.svg"))?;
    assert!(
        svg.starts_with("<?xml")
            && svg.contains("<svg")
            && svg.contains("viewBox=")
            && svg.trim_end().ends_with("</svg>")
    );
    check_udev_rules(&std::fs::read_to_string(root.join("usr/lib/udev/rules.d/60-keyfill.rules"))?)?;
    // The completions load in their shells and belong to keyfill.
    let bash = root.join("usr/share/bash-completion/completions/keyfill");
    let registered =
        stdout(Command::new("bash").arg("-c").arg(format!("source {}; complete -p keyfill", bash.display())))?;
    assert!(registered.contains("_keyfill"), "{registered}");
    run(Command::new("zsh").arg("-n").arg(root.join("usr/share/zsh/vendor-completions/_keyfill")))?;
    run(Command::new("fish").arg("--no-execute").arg(root.join("usr/share/fish/vendor_completions.d/keyfill.fish")))?;
    // Generated without the packaging account's settings.
    let generated = stdout(Command::new("sh").arg("-c").arg(format!(
        "cat {root}/usr/share/bash-completion/completions/keyfill {root}/usr/share/zsh/vendor-completions/_keyfill \
         {root}/usr/share/fish/vendor_completions.d/keyfill.fish; zcat {root}/usr/share/man/man1/*.gz",
        root = root.display()
    )))?;
    assert!(generated.contains("KEYFILL_DB") && !generated.contains("packager-only"));
    let page = root.join("usr/share/man/man1/keyfill-provision.1.gz");
    let text = stdout(Command::new("man").arg("-l").arg(&page).env("MANPAGER", "cat").env("MANWIDTH", "80"))?;
    assert!(text.contains("keyfill-provision") && text.contains("SYNOPSIS"), "{text}");
    // Machine-readable copyright (DEP-5) with the workspace's licence.
    for package in ["keyfill", "keyfill-agent"] {
        let copyright = std::fs::read_to_string(root.join(format!("usr/share/doc/{package}/copyright")))?;
        assert!(copyright.starts_with("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"));
        assert!(copyright.contains("License: Apache-2.0 or MIT"), "{copyright}");
    }

    // The service runs the MQTT client as its own user, hardened.
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/keyfill-agent.service"))?;
    for line in [
        "ExecStart=/usr/bin/keyfill-agent --state /var/lib/keyfill-agent mqtt",
        "EnvironmentFile=-/etc/default/keyfill-agent",
        "User=keyfill-agent",
        "StateDirectory=keyfill-agent",
        "StateDirectoryMode=0700",
        "UMask=0077",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "PrivateMounts=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "Restart=on-failure",
    ] {
        assert!(unit.lines().any(|l| l == line), "{line} in the unit:\n{unit}");
    }
    // Every setting the environment file offers is one `keyfill-agent mqtt` reads.
    let help = stdout(Command::new(root.join("usr/bin/keyfill-agent")).args(["mqtt", "--help"]))?;
    let default = std::fs::read_to_string(root.join("etc/default/keyfill-agent"))?;
    let offered: Vec<&str> =
        default.lines().filter_map(|l| l.strip_prefix('#')?.split_once('=')).map(|(name, _)| name).collect();
    assert!(offered.contains(&"KEYFILL_AGENT_BROKER"), "{default}");
    for name in offered.iter().filter(|name| name.starts_with("KEYFILL_AGENT_")) {
        assert!(help.contains(&format!("[env: {name}")), "{name} is not an option of keyfill-agent mqtt:\n{help}");
    }
    // The unit passes no broker: it comes from KEYFILL_AGENT_BROKER. Without it the agent stops
    // with clap's usage status, 2, which the unit does not restart on (RestartPreventExitStatus).
    let agent = root.join("usr/bin/keyfill-agent");
    let state = dir.path().join("state");
    let mqtt = |broker: Option<&str>| {
        let mut command = Command::new(&agent);
        command.arg("--state").arg(&state).arg("mqtt").env_remove("KEYFILL_AGENT_BROKER");
        if let Some(broker) = broker {
            command.env("KEYFILL_AGENT_BROKER", broker);
        }
        command.output()
    };
    let unconfigured = mqtt(None)?;
    assert_eq!(unconfigured.status.code(), Some(2), "{unconfigured:?}");
    assert!(String::from_utf8_lossy(&unconfigured.stderr).contains("--broker"), "{unconfigured:?}");
    let configured = mqtt(Some("mqtt://127.0.0.1:1"))?;
    assert_eq!(configured.status.code(), Some(1), "{configured:?}");
    assert!(String::from_utf8_lossy(&configured.stderr).contains("no device identity"), "{configured:?}");
    assert!(unit.lines().any(|l| l == "RestartPreventExitStatus=2"));

    // Maintainer scripts parse, and the environment file is a conffile.
    let control = dir.path().join("control");
    std::fs::create_dir(&control)?;
    for (deb, scripts) in
        [(&packages.keyfill, &["postinst", "postrm"][..]), (&packages.agent, &["postinst", "prerm", "postrm"][..])]
    {
        let into = control.join(deb.file_name().context("a file name")?);
        run(Command::new("dpkg-deb").arg("--control").arg(deb).arg(&into))?;
        for script in scripts {
            let path = into.join(script);
            assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o755, "{path:?}");
            run(Command::new("sh").arg("-n").arg(&path))?;
        }
        assert!(std::fs::read_to_string(into.join("md5sums"))?.contains("usr/bin/keyfill"));
    }
    let conffiles =
        std::fs::read_to_string(control.join(packages.agent.file_name().context("name")?).join("conffiles"))?;
    assert_eq!(conffiles.trim(), "/etc/default/keyfill-agent");
    Ok(())
}

/// What the install test changed outside the packages' files, undone on drop whatever happened:
/// the packages purged, and the user, groups and state directory removed if they did not exist
/// before (the packages keep them on purge on purpose).
struct Installation {
    user_existed: bool,
    group_existed: bool,
    state_existed: bool,
}

const STATE: &str = "/var/lib/keyfill-agent";

fn exists(database: &str, name: &str) -> bool {
    Command::new("getent").args([database, name]).output().is_ok_and(|output| output.status.success())
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["--show", "--showformat=${db:Status-Status}", package])
        .output()
        .is_ok_and(|output| output.status.success() && output.stdout != b"not-installed")
}

impl Drop for Installation {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "keyfill", "keyfill-agent"]).output();
        if !self.user_existed {
            let _ = Command::new("userdel").arg("keyfill-agent").output();
            let _ = Command::new("groupdel").arg("keyfill-agent").output();
        }
        if !self.group_existed {
            let _ = Command::new("groupdel").arg("keyfill").output();
        }
        if !self.state_existed {
            let _ = std::fs::remove_dir_all(STATE);
        }
    }
}

/// Skips the install test with `reason`; with `KEYFILL_PACKAGE_TEST=1` (a run that must cover
/// installing) that is a failure instead.
fn skip(reason: &str) -> Result<()> {
    if std::env::var("KEYFILL_PACKAGE_TEST").is_ok_and(|v| v == "1") {
        panic!("KEYFILL_PACKAGE_TEST=1 but the install test cannot run: {reason}");
    }
    println!("skipped: {reason}");
    Ok(())
}

#[test]
fn package_deb_installs_runs_and_purges_cleanly() -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return skip("needs root (dpkg --install into /)");
    }
    if Command::new("dpkg").arg("--version").output().is_err() {
        return skip("needs dpkg");
    }
    // One installing test at a time on this machine, across test processes (two cargo test runs).
    let lock = std::fs::File::create("/run/lock/keyfill-package-test.lock")
        .or_else(|_| std::fs::File::create(std::env::temp_dir().join("keyfill-package-test.lock")))?;
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, e)| e)?;
    if installed("keyfill") || installed("keyfill-agent") {
        return skip(
            "keyfill or keyfill-agent is installed on this machine and the test does not replace it \
             (dpkg --purge keyfill keyfill-agent lets it run)",
        );
    }
    let packages = build_packages()?;
    let _installation = Installation {
        user_existed: exists("passwd", "keyfill-agent"),
        group_existed: exists("group", "keyfill"),
        state_existed: Path::new(STATE).exists(),
    };

    // Install both. A udevadm that fails stands in for one without a running udevd: postinst must
    // call it and go on.
    let dir = tempfile::tempdir()?;
    let fake_bin = dir.path().join("bin");
    std::fs::create_dir(&fake_bin)?;
    let udevadm_log = dir.path().join("udevadm.log");
    std::fs::write(fake_bin.join("udevadm"), format!("#!/bin/sh\necho \"$*\" >>{}\nexit 1\n", udevadm_log.display()))?;
    std::fs::set_permissions(fake_bin.join("udevadm"), std::fs::Permissions::from_mode(0o755))?;
    let path = format!("{}:{}", fake_bin.display(), std::env::var("PATH").unwrap_or_default());
    run(Command::new("dpkg").arg("--install").arg(&packages.keyfill).arg(&packages.agent).env("PATH", &path))?;
    let udevadm = std::fs::read_to_string(&udevadm_log)?;
    assert!(udevadm.contains("control --reload-rules") && udevadm.contains("trigger"), "{udevadm}");

    // The binaries run from /usr/bin.
    assert_eq!(stdout(Command::new("/usr/bin/keyfill").arg("--version"))?.trim(), format!("keyfill {VERSION}"));
    assert_eq!(
        stdout(Command::new("/usr/bin/keyfill-agent").arg("--version"))?.trim(),
        format!("keyfill-agent {VERSION}")
    );
    assert_eq!(stdout(Command::new("/usr/bin/keyfill-gui").arg("--version"))?.trim(), format!("keyfill-gui {VERSION}"));

    // The service user (no login), the operators' group, and the agent's private state.
    let passwd = stdout(Command::new("getent").args(["passwd", "keyfill-agent"]))?;
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields.get(5), Some(&STATE), "{passwd}");
    assert!(fields.get(6).is_some_and(|shell| shell.ends_with("nologin")), "{passwd}");
    let uid: u32 = fields[2].parse()?;
    assert!(uid < 1000, "a system user: {passwd}");
    run(Command::new("id").arg("keyfill-agent"))?;
    run(Command::new("getent").args(["group", "keyfill"]))?;
    let state = std::fs::metadata(STATE)?;
    assert_eq!((state.mode() & 0o7777, state.uid()), (0o700, uid), "{STATE}");

    // systemd accepts the unit as installed (it checks that ExecStart's binary exists, the
    // directives and the specifiers), with nothing to warn about.
    let verify = Command::new("systemd-analyze")
        .args(["verify", "/usr/lib/systemd/system/keyfill-agent.service"])
        .output()
        .context("systemd-analyze (systemd, installed by scripts/setup)")?;
    let said = format!("{}{}", String::from_utf8_lossy(&verify.stdout), String::from_utf8_lossy(&verify.stderr));
    assert!(verify.status.success(), "systemd-analyze verify: {said}");
    let warnings: Vec<&str> = said.lines().filter(|line| line.contains("keyfill-agent")).collect();
    assert!(warnings.is_empty(), "systemd-analyze verify: {said}");
    // … and it would have said so: the same unit with a misspelt directive.
    let misspelt = dir.path().join("keyfill-agent.service");
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/keyfill-agent.service")?;
    std::fs::write(&misspelt, unit.replace("ProtectSystem=strict", "ProtectSystm=strict"))?;
    let verify = Command::new("systemd-analyze").arg("verify").arg(&misspelt).output()?;
    assert!(String::from_utf8_lossy(&verify.stderr).contains("Unknown key 'ProtectSystm'"), "{verify:?}");
    // udev's own check where udevadm has one (systemd 253 and later; Debian 12 has 252).
    if Command::new("udevadm").args(["verify", "--help"]).output().is_ok_and(|o| o.status.success()) {
        run(Command::new("udevadm").args(["verify", "/usr/lib/udev/rules.d/60-keyfill.rules"]))?;
    } else {
        println!("udevadm verify not available: the rule's syntax is only checked by this crate's own parser");
    }

    // The manual pages are where man looks for them.
    let found = stdout(Command::new("man").args(["-w", "keyfill-provision"]))?;
    assert_eq!(found.trim(), "/usr/share/man/man1/keyfill-provision.1.gz");
    let text = stdout(Command::new("man").arg("-l").arg(found.trim()).env("MANPAGER", "cat"))?;
    assert!(text.contains("keyfill-provision"), "{text}");

    // Remove: the programs go, the edited configuration stays; purge: that goes too, while the
    // device's state and its user stay (README.Debian).
    run(Command::new("dpkg").args(["--remove", "keyfill", "keyfill-agent"]).env("PATH", &path))?;
    for gone in [
        "/usr/bin/keyfill",
        "/usr/bin/keyfill-gui",
        "/usr/bin/keyfill-agent",
        "/usr/lib/systemd/system/keyfill-agent.service",
        "/usr/lib/udev/rules.d/60-keyfill.rules",
        "/usr/share/applications/keyfill.desktop",
        "/usr/share/man/man1/keyfill.1.gz",
        "/usr/share/bash-completion/completions/keyfill",
        "/etc/keyfill",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} is still there after dpkg --remove");
    }
    assert!(Path::new("/etc/default/keyfill-agent").exists(), "the conffile stays until purge");
    run(Command::new("dpkg").args(["--purge", "keyfill", "keyfill-agent"]).env("PATH", &path))?;
    assert!(!Path::new("/etc/default/keyfill-agent").exists());
    assert!(!Path::new("/var/lib/systemd/deb-systemd-helper-enabled/keyfill-agent.service.dsh-also").exists());
    assert!(!installed("keyfill") && !installed("keyfill-agent"));
    assert!(Path::new(STATE).is_dir() && exists("passwd", "keyfill-agent"), "state and user are kept on purge");
    Ok(())
}

#[test]
fn package_deb_udev_rule_check_catches_mistakes() {
    let good = "ACTION==\"remove\", GOTO=\"end\"\n# a comment\nSUBSYSTEM==\"tty\", KERNEL==\"ttyUSB[0-9]*\", \
                RUN+=\"/usr/bin/setfacl -m g:keyfill:rw $devnode\"\nLABEL=\"end\"\n";
    check_udev_rules(good).expect("a good rule");
    for bad in [
        "SUBSYSTEM==\"tty\", KERNL==\"ttyUSB*\"",
        "SUBSYSTEM==\"tty\", GROUP=keyfill",
        "SUBSYSTEM==\"tty\" GROUP=\"keyfill\"",
        "SUBSYSTEM==\"tty\", GROUP=\"keyfill\",",
        "ENV{ID_USB_INTERFACES==\"*:0b????:*\"",
        "SUBSYSTEM==\"tty\", MODE=\"0660",
    ] {
        assert!(check_udev_rules(bad).is_err(), "accepted: {bad}");
    }
}
