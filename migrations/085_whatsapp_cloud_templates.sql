-- The whatsapp_templates mapping serves both WhatsApp providers: `content_sid` is Twilio's
-- HX… Content SID or the name of a template approved in Meta's WhatsApp Manager (lower-case
-- letters, digits, underscores), for WHATSAPP_PROVIDER=cloud.
ALTER TABLE whatsapp_templates DROP CONSTRAINT IF EXISTS whatsapp_templates_content_sid_check;
DO $$
BEGIN
    ALTER TABLE whatsapp_templates ADD CONSTRAINT whatsapp_templates_template_check
        CHECK (content_sid LIKE 'HX%'
               OR (content_sid ~ '^[a-z0-9_]+$' AND length(content_sid) <= 512));
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;
