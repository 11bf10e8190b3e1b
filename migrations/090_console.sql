-- The web console's sign-in: one-time links sent from the chat (or printed by the CLI) and the
-- sessions they open. Only SHA-256 hashes of the tokens are stored: a copy of this table
-- signs nobody in. Both live here, not in a process, so any replica honours them.
CREATE TABLE IF NOT EXISTS console_links (
    token_hash text PRIMARY KEY,
    profile_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz
);

CREATE TABLE IF NOT EXISTS console_sessions (
    token_hash text PRIMARY KEY,
    profile_id uuid NOT NULL,
    -- The form token every POST of this session must carry (CSRF).
    csrf text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now(),
    ended_at timestamptz
);
CREATE INDEX IF NOT EXISTS console_sessions_profile_idx ON console_sessions (profile_id);

-- An order's page finds the last message to each of its buyers by contact.
CREATE INDEX IF NOT EXISTS messages_contact_idx ON messages (contact_id, created_at DESC)
    WHERE contact_id IS NOT NULL;
