-- Who a subscription belongs to, by bare JID, indexed: a user's relations ("whose presence do I
-- follow?") are read when the user needs them, not from an in-memory copy of every service.
ALTER TABLE pubsub_subscriptions ADD COLUMN subscriber TEXT NOT NULL DEFAULT '';
UPDATE pubsub_subscriptions SET subscriber =
    CASE WHEN instr(jid, '/') > 0 THEN substr(jid, 1, instr(jid, '/') - 1) ELSE jid END;
CREATE INDEX pubsub_subscriptions_by_subscriber ON pubsub_subscriptions (subscriber);
