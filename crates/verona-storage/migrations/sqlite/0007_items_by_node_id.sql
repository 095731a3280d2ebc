-- Items name their node by an integer instead of its service and node text. Each item's row
-- and both of its index entries were about 90 bytes longer, and a chat message, archived in
-- its conversation's node, changes two index pages: smaller entries halve the bytes a commit
-- writes (see docs/benchmarks.md, "Archived messages: items keyed by node number").
--
-- `id` is added rather than made the table's INTEGER PRIMARY KEY so that pubsub_nodes, which
-- the other tables' foreign keys name, is not rebuilt. A new node takes the largest id plus
-- one; the implicit rowid is not used, as VACUUM may renumber it.
ALTER TABLE pubsub_nodes ADD COLUMN id INTEGER;
UPDATE pubsub_nodes SET id = rowid;
CREATE UNIQUE INDEX pubsub_nodes_by_id ON pubsub_nodes (id);

ALTER TABLE pubsub_items RENAME TO pubsub_items_by_name;
CREATE TABLE pubsub_items (
    -- Publication order, as before: storing an item replaces any row with its id, and the new
    -- row gets a seq above every existing one.
    seq       INTEGER PRIMARY KEY,
    node_id   INTEGER NOT NULL REFERENCES pubsub_nodes (id) ON DELETE CASCADE,
    item_id   TEXT    NOT NULL,
    payload   TEXT,
    publisher TEXT    NOT NULL,
    -- Microseconds since 1970-01-01T00:00:00Z.
    published INTEGER NOT NULL,
    UNIQUE (node_id, item_id)
);
INSERT INTO pubsub_items (seq, node_id, item_id, payload, publisher, published)
    SELECT i.seq, n.id, i.item_id, i.payload, i.publisher, i.published
    FROM pubsub_items_by_name AS i
    JOIN pubsub_nodes AS n ON n.service = i.service AND n.node = i.node;
DROP TABLE pubsub_items_by_name;
-- A node's items in storage order: its newest (a service becoming resident), a page of its
-- archive, its oldest (trimming).
CREATE INDEX pubsub_items_by_node ON pubsub_items (node_id, seq);
