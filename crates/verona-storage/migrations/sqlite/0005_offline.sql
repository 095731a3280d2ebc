-- Messages kept for accounts with no available session, in arrival order (seq, never
-- reused: a delivery removes "up to" a seq it read).
CREATE TABLE offline (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT    NOT NULL,
    stanza  TEXT    NOT NULL,
    -- Microseconds since 1970-01-01T00:00:00Z.
    kept    INTEGER NOT NULL
);
CREATE INDEX offline_by_account ON offline (account, seq);
