-- Preferences and routing, and the records that make scheduled sends happen once.

ALTER TABLE contacts ADD COLUMN quiet_start time;   -- local time in contacts.timezone
ALTER TABLE contacts ADD COLUMN quiet_end time;

-- Per kind of notification (reminders, order_updates, gom_alerts, summaries, custom):
-- absent means on. Transactional messages ignore this; STOP (opted_out_at) stops all.
CREATE TABLE contact_preferences (
    contact_id uuid NOT NULL REFERENCES contacts (id) ON DELETE CASCADE,
    kind text NOT NULL,
    enabled boolean NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, kind)
);

-- The other addresses to try, in order, when delivery fails permanently on this one.
ALTER TABLE messages ADD COLUMN routes jsonb NOT NULL DEFAULT '[]'::jsonb;

-- One reminder per submission and offset, whatever the number of workers or restarts.
CREATE TABLE reminders_sent (
    submission_id uuid NOT NULL,
    offset_hours integer NOT NULL,
    sent_at timestamptz NOT NULL,
    message_id uuid,
    outcome text NOT NULL DEFAULT 'sent',   -- 'sent' or 'superseded' (a later offset went out)
    PRIMARY KEY (submission_id, offset_hours)
);

-- Quota and deadline alerts to the GOM, each threshold once per order.
CREATE TABLE order_alerts (
    order_id uuid NOT NULL,
    kind text NOT NULL,        -- 'quota' or 'deadline'
    threshold integer NOT NULL,
    sent_at timestamptz NOT NULL,
    PRIMARY KEY (order_id, kind, threshold)
);

-- Daily and weekly GOM summaries, once per GOM and period.
CREATE TABLE gom_summaries (
    profile_id uuid NOT NULL,
    period text NOT NULL,
    period_key text NOT NULL,  -- the GOM's local date (daily) or ISO week (weekly)
    sent_at timestamptz NOT NULL,
    PRIMARY KEY (profile_id, period, period_key)
);
