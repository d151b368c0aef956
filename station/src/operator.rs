//! Who operates the station, for the event log, when nobody said: the login name of the
//! account the process runs as.

/// The login name of the process's real user, from the passwd database (not `$USER`, which a
/// service manager or `env -i` leaves unset and anyone can set).
pub fn login_name() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|user| user.name)
}

/// The operator recorded when none is given: the login name, else `$USER`, else `uid-N`.
pub fn default_operator() -> String {
    login_name()
        .or_else(|| std::env::var("USER").ok().filter(|user| !user.is_empty()))
        .unwrap_or_else(|| format!("uid-{}", nix::unistd::getuid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gui_operator_is_the_login_name_of_the_real_user() {
        let output = std::process::Command::new("id").arg("-un").output().expect("id runs");
        let expected = String::from_utf8(output.stdout).expect("a name").trim().to_owned();
        assert_eq!(login_name().as_deref(), Some(expected.as_str()));
        assert_eq!(default_operator(), expected);
    }
}
