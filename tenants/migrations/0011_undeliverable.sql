-- Undeliverable contacts (tenants.undeliverable): a permanent carrier error (or 3 consecutive
-- "unreachable" ones) marks the contact; the scan and Enroll leave it out until a later text to
-- it is delivered. The phone number never changes on a contact, so a new number is a new,
-- unmarked contact.
ALTER TABLE contacts
    ADD COLUMN undeliverable_at timestamptz,               -- marked since; NULL: not marked
    ADD COLUMN undeliverable_code text NOT NULL DEFAULT '', -- the carrier error that marked it
    -- the ledger row whose failure marked it: only a text sent after it and delivered clears
    ADD COLUMN undeliverable_message_id bigint;

-- The running enrollment of a contact that was just marked is owed the `undeliverable` signal.
-- The kind is added to whatever the constraint allows at this point (other migrations extend
-- the same list).
DO $$
DECLARE
    allowed text;
BEGIN
    SELECT pg_get_constraintdef(oid) INTO allowed FROM pg_constraint
     WHERE conrelid = 'followups'::regclass AND conname = 'followups_kind_check';
    IF allowed IS NULL OR position('signal_undeliverable' IN allowed) > 0 THEN
        RETURN;
    END IF;
    ALTER TABLE followups DROP CONSTRAINT followups_kind_check;
    EXECUTE 'ALTER TABLE followups ADD CONSTRAINT followups_kind_check '
        || replace(allowed, 'ARRAY[', 'ARRAY[''signal_undeliverable''::text, ');
END
$$;
