-- Deleting an account removes its affiliations on every service: find them by JID.
CREATE INDEX pubsub_affiliations_by_jid ON pubsub_affiliations (jid);
