-- WhatsApp's approved Content templates (Twilio Content API): what is sent instead of free
-- text when the buyer's 24-hour window is closed. One per event and language; `variables`
-- maps the template's placeholders to our values, e.g. {"1": "{text}"}.
CREATE TABLE IF NOT EXISTS whatsapp_templates (
    event text NOT NULL,            -- an event name, or '*' for any event without its own
    locale text NOT NULL,           -- en, fil, ms
    content_sid text NOT NULL CHECK (content_sid LIKE 'HX%'),
    variables jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(variables) = 'object'),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (event, locale)
);
