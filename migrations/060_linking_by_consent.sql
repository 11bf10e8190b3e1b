-- Linking by consent: a buyer's code names the submission it links (not a contact a chat
-- would be moved into), and one GOM profile may be held by several people's contacts (the
-- GOM on Telegram and on Discord), since a chat is never moved into another contact.
ALTER TABLE link_tokens ADD COLUMN IF NOT EXISTS submission_id uuid;
ALTER TABLE link_tokens DROP CONSTRAINT IF EXISTS link_tokens_check;
ALTER TABLE link_tokens DROP CONSTRAINT IF EXISTS link_tokens_one_subject;
-- contact_id: codes made before this migration (every submission of that contact).
ALTER TABLE link_tokens ADD CONSTRAINT link_tokens_one_subject
    CHECK (num_nonnulls(contact_id, profile_id, submission_id) = 1);
DROP INDEX IF EXISTS contacts_gom_profile_idx;
CREATE INDEX IF NOT EXISTS contacts_profile_idx ON contacts (profile_id)
    WHERE profile_id IS NOT NULL;
