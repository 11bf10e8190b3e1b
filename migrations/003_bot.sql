-- What the chat bots need beyond the core schema.

-- A buyer's delivery address and notes from a chat submission (the core table has neither).
CREATE TABLE submission_details (
    submission_id uuid PRIMARY KEY,
    address text,
    notes text,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- One-use tokens that link a chat to a buyer's contact or a GOM's profile
-- (Telegram /start <token>, Discord /link <code>, WhatsApp LINK <code>).
CREATE TABLE link_tokens (
    token text PRIMARY KEY,
    contact_id uuid REFERENCES contacts (id) ON DELETE CASCADE,
    profile_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    used_by text,
    CHECK ((contact_id IS NULL) <> (profile_id IS NULL))
);
