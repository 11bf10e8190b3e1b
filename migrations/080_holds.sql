-- Holds (issue 20): how many items one buyer may hold in an order, and the last notice an
-- unpaid hold gets before it expires. Ours, beside the core schema's columns, which stay.
-- NULL max_per_buyer: DEFAULT_MAX_PER_BUYER applies (orders made by the core have none).
ALTER TABLE orders ADD COLUMN IF NOT EXISTS max_per_buyer integer
    CHECK (max_per_buyer IS NULL OR max_per_buyer > 0);

-- One row per unpaid submission told "your hold expires at ...": the expiry job expires a
-- hold only once this notice has gone out and its `expires_at` has passed.
CREATE TABLE IF NOT EXISTS hold_notices (
    submission_id uuid PRIMARY KEY REFERENCES submissions (id) ON DELETE CASCADE,
    warned_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    message_id uuid,
    expired_at timestamptz
);

CREATE INDEX IF NOT EXISTS hold_notices_due_idx ON hold_notices (expires_at)
    WHERE expired_at IS NULL;
