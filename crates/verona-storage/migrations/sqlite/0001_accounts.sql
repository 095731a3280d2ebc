-- SCRAM verifiers only: the password and salted password are never stored.
CREATE TABLE accounts (
    jid           TEXT    PRIMARY KEY NOT NULL,
    salt          BLOB    NOT NULL,
    iterations    INTEGER NOT NULL,
    sha1_stored   BLOB    NOT NULL,
    sha1_server   BLOB    NOT NULL,
    sha256_stored BLOB    NOT NULL,
    sha256_server BLOB    NOT NULL,
    created_at    INTEGER NOT NULL
);
