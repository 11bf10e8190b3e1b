-- Workers claim the due messages of one channel, oldest first, when its doorbell rings or
-- their poll comes round (outbox.claim_due): an index of the unfinished messages by channel
-- and due time. It also serves every reader of messages_pending_idx (the pending count per
-- channel, the overdue channels), which it replaces: one index less to write per message.
-- Built in the migration's transaction (migrations run in one each, so not CONCURRENTLY):
-- the build reads the whole messages table and holds writes to it meanwhile (0.07 s for
-- 250,000 rows, cached); on a very large table, build it CONCURRENTLY by hand first, under
-- this name, and this statement does nothing.
CREATE INDEX IF NOT EXISTS messages_due_idx ON messages (channel, next_attempt_at)
    WHERE status IN ('queued', 'sending');
DROP INDEX IF EXISTS messages_pending_idx;
