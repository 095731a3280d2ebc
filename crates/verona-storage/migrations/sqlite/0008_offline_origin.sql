-- Each kept message names its origin (a sender's or a publisher's bare JID) and its size, so
-- that one origin takes at most a share of an account's queue, the queue is bounded in bytes
-- as well as in messages, and what an account has since blocked is not delivered. Messages
-- kept before have no known origin ('').
ALTER TABLE offline ADD COLUMN origin TEXT NOT NULL DEFAULT '';
ALTER TABLE offline ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
UPDATE offline SET bytes = length(CAST(stanza AS BLOB));
-- What an account's queue holds by origin, read from the index alone.
CREATE INDEX offline_by_origin ON offline (account, origin, bytes);
