-- The persistent state of pubsub services, as the engine's StoreOps describe it. `service`
-- names the service instance: 'pubsub.example.org', a PEP account 'juliet@example.org'.
-- Configurations and subscription options are JSON lists of form fields,
-- [["pubsub#title", ["…"]], …], in the syntax the engine parses.
CREATE TABLE pubsub_nodes (
    service TEXT NOT NULL,
    node    TEXT NOT NULL,
    config  TEXT NOT NULL,
    PRIMARY KEY (service, node)
);

CREATE TABLE pubsub_affiliations (
    service     TEXT NOT NULL,
    node        TEXT NOT NULL,
    jid         TEXT NOT NULL,
    affiliation TEXT NOT NULL,
    PRIMARY KEY (service, node, jid),
    FOREIGN KEY (service, node) REFERENCES pubsub_nodes (service, node) ON DELETE CASCADE
);

CREATE TABLE pubsub_subscriptions (
    service TEXT NOT NULL,
    node    TEXT NOT NULL,
    subid   TEXT NOT NULL,
    jid     TEXT NOT NULL,
    state   TEXT NOT NULL,
    options TEXT NOT NULL,
    PRIMARY KEY (service, node, subid),
    FOREIGN KEY (service, node) REFERENCES pubsub_nodes (service, node) ON DELETE CASCADE
);

CREATE TABLE pubsub_items (
    -- Publication order. Storing an item deletes any row with its id and inserts a new one,
    -- and SQLite gives a new row a rowid above every existing one, so the newest item has the
    -- largest seq, a re-published id included.
    seq       INTEGER PRIMARY KEY,
    service   TEXT    NOT NULL,
    node      TEXT    NOT NULL,
    item_id   TEXT    NOT NULL,
    payload   TEXT,
    publisher TEXT    NOT NULL,
    -- Microseconds since 1970-01-01T00:00:00Z.
    published INTEGER NOT NULL,
    UNIQUE (service, node, item_id),
    FOREIGN KEY (service, node) REFERENCES pubsub_nodes (service, node) ON DELETE CASCADE
);
