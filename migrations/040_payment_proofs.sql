-- Payment proofs: a buyer's receipt (screenshot or PDF) from any chat, what the Smart Agent
-- read in it, and the decision. The file lives here, where only the GOM who owns the order
-- can see it (through a signed, short-lived URL); AUTO_DELETE_PROCESSED_IMAGES drops the
-- bytes once decided and keeps the hash and metadata.
CREATE TABLE payment_proofs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    -- NULL while the buyer, who has several unpaid submissions, chooses which one it pays.
    submission_id uuid,
    contact_id uuid REFERENCES contacts (id) ON DELETE SET NULL,
    channel text NOT NULL,
    content bytea,
    mime text NOT NULL,
    size integer NOT NULL CHECK (size >= 0),
    sha256 text NOT NULL,
    status text NOT NULL DEFAULT 'pending_review' CHECK (status IN
        ('awaiting_submission', 'pending_review', 'approved', 'rejected', 'superseded')),
    -- Only what concerns this submission: never other buyers' matches.
    agent_result jsonb,
    checked_at timestamptz,         -- the Smart Agent answered, failed or was not asked
    decided_by text,                -- 'gom:<profile id>' or 'smart_agent'
    decided_at timestamptz,
    reason text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payment_proofs_submission_idx ON payment_proofs (submission_id);
CREATE INDEX payment_proofs_review_idx ON payment_proofs (created_at)
    WHERE status = 'pending_review';
CREATE INDEX payment_proofs_contact_idx ON payment_proofs (contact_id)
    WHERE status = 'awaiting_submission';
