-- Messaging's own tables: contacts, the outbox, attempts, idempotency, inbound ids, audit.

CREATE TABLE contacts (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind text NOT NULL DEFAULT 'buyer' CHECK (kind IN ('buyer', 'gom')),
    display_name text,
    phone text,
    profile_id uuid,               -- the GOM's profiles.id when kind = 'gom'
    locale text NOT NULL DEFAULT 'en',
    timezone text NOT NULL DEFAULT 'Asia/Manila',
    opted_out_at timestamptz,      -- STOP: nothing but what the buyer asks for
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX contacts_gom_profile_idx ON contacts (profile_id) WHERE profile_id IS NOT NULL;

CREATE TABLE contact_addresses (
    id bigserial PRIMARY KEY,
    contact_id uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    channel text NOT NULL,
    address text NOT NULL,
    priority integer NOT NULL DEFAULT 100,   -- lower is tried first
    reachable boolean NOT NULL DEFAULT true,
    unreachable_reason text,
    last_inbound_at timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (channel, address)
);
CREATE INDEX contact_addresses_contact_idx ON contact_addresses (contact_id);

-- Which contact a submission belongs to (a buyer may submit from several chats).
CREATE TABLE submission_contacts (
    submission_id uuid PRIMARY KEY,
    contact_id uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE
);
CREATE INDEX submission_contacts_contact_idx ON submission_contacts (contact_id);

CREATE TABLE notifications (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    event text NOT NULL,
    data jsonb NOT NULL DEFAULT '{}'::jsonb,
    locale text,
    send_at timestamptz,
    source text NOT NULL DEFAULT 'api',
    request_id text,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    notification_id uuid REFERENCES notifications (id) ON DELETE CASCADE,
    contact_id uuid REFERENCES contacts (id) ON DELETE SET NULL,
    channel text NOT NULL,
    address text NOT NULL,
    event text NOT NULL,
    locale text NOT NULL DEFAULT 'en',
    body jsonb NOT NULL,
    status text NOT NULL DEFAULT 'queued' CHECK (status IN
        ('queued', 'sending', 'sent', 'delivered', 'read', 'failed', 'skipped')),
    status_reason text,
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_until timestamptz,
    provider_message_id text,
    last_error text,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    sent_at timestamptz,
    delivered_at timestamptz,
    read_at timestamptz
);
CREATE INDEX messages_notification_idx ON messages (notification_id);
-- The sweeper's view: only unfinished messages.
CREATE INDEX messages_pending_idx ON messages (next_attempt_at)
    WHERE status IN ('queued', 'sending');
CREATE INDEX messages_provider_idx ON messages (channel, provider_message_id)
    WHERE provider_message_id IS NOT NULL;

CREATE TABLE delivery_attempts (
    id bigserial PRIMARY KEY,
    message_id uuid NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    worker text,
    started_at timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    outcome text CHECK (outcome IN ('sent', 'transient', 'permanent', 'skipped')),
    error_code text,
    error text,
    retry_after double precision
);
CREATE INDEX delivery_attempts_message_idx ON delivery_attempts (message_id);

CREATE TABLE idempotency_keys (
    scope text NOT NULL,
    key text NOT NULL,
    request_hash text NOT NULL,
    status_code integer NOT NULL,
    response jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

CREATE TABLE inbound_updates (
    platform text NOT NULL,
    update_id text NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (platform, update_id)
);

CREATE TABLE audit_log (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    direction text NOT NULL CHECK (direction IN ('inbound', 'outbound', 'admin')),
    actor text NOT NULL,            -- who: a contact id, 'api', 'gom:<id>', 'system'
    action text NOT NULL,           -- what: 'notify', 'message.sent', 'command', ...
    channel text,
    subject text,                   -- the message, submission or contact concerned
    result text,
    detail jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at_idx ON audit_log (at);
CREATE INDEX audit_log_subject_idx ON audit_log (subject);

CREATE TABLE sandbox_messages (
    id bigserial PRIMARY KEY,
    message_id uuid NOT NULL UNIQUE,
    address text NOT NULL,
    payload jsonb NOT NULL,
    deliveries integer NOT NULL DEFAULT 1,
    received_at timestamptz NOT NULL DEFAULT now()
);
