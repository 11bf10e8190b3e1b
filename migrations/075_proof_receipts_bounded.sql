-- Receipts: one proof per distinct file per submission (the sha256 of its bytes), so the
-- same file sent again is "already received", not a second proof that can be decided the
-- other way. Duplicates kept from before are renamed (their decision rows stay).
UPDATE payment_proofs p
   SET sha256 = p.sha256 || ':duplicate:' || p.id
  FROM payment_proofs first
 WHERE p.submission_id IS NOT NULL
   AND first.submission_id = p.submission_id
   AND first.sha256 = p.sha256
   AND (first.created_at, first.id) < (p.created_at, p.id)
   AND p.sha256 NOT LIKE '%:duplicate:%';

CREATE UNIQUE INDEX IF NOT EXISTS payment_proofs_one_file_idx
    ON payment_proofs (submission_id, sha256) WHERE submission_id IS NOT NULL;

-- How many receipts a person stored in the last hour (PROOF_MAX_PER_PERSON_HOUR).
CREATE INDEX IF NOT EXISTS payment_proofs_contact_recent_idx
    ON payment_proofs (contact_id, created_at);

-- Images still kept, oldest first, for the proof-images retention job.
CREATE INDEX IF NOT EXISTS payment_proofs_kept_image_idx
    ON payment_proofs (created_at) WHERE content IS NOT NULL;
