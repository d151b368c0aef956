-- Named operators (src/custody/operators.rs). Each row but its login counters is signed by the
-- signing key of the station that wrote it, certified by the factory root; a row written by
-- anything else is refused at login. Removed operators keep their row, marked, so that their
-- names stay theirs in the event log.
CREATE TABLE operators (
    name           TEXT PRIMARY KEY NOT NULL,
    role           TEXT NOT NULL,
    signing_public TEXT NOT NULL,
    unlock_public  TEXT NOT NULL,
    credential     TEXT NOT NULL,
    -- JSON: the PKCS#11 token (smart card) whose Ed25519 key the operator also proves, if any.
    card           TEXT,
    removed_at     BIGINT,
    changed_at     BIGINT NOT NULL,
    signer         TEXT NOT NULL,
    signature      TEXT NOT NULL,
    -- Wrong passphrases in a row, and until when (ms) logins are refused after too many.
    failed_logins  BIGINT NOT NULL DEFAULT 0,
    locked_until   BIGINT NOT NULL DEFAULT 0
);
