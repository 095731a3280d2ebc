-- A user's relations (whose presence it follows, which other nodes it subscribes to) are read
-- at each login: read them from the index alone, in the order they are returned, instead of
-- looking up each of the user's rows in the table.
DROP INDEX pubsub_subscriptions_by_subscriber;
CREATE INDEX pubsub_subscriptions_by_subscriber
    ON pubsub_subscriptions (subscriber, service, node, subid, state);
