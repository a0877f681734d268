-- Consent evidence export (ExportContactEvidence): what one contact's dispute file needs.

-- The send-rules version (tenants/data/us_send_rules.json) a sequence text's send window was
-- checked under, recorded when its ledger row is reserved. '' for service texts (no send
-- window governs them) and for texts sent before this column existed.
ALTER TABLE messages ADD COLUMN rules_version text NOT NULL DEFAULT '';

-- The export reads a contact's inbound texts in time order, and the texts its number sent to
-- the location before it was a contact (no contact row then), without scanning every text.
CREATE INDEX inbound_messages_contact
    ON inbound_messages (franchisor_id, location_id, contact_id, received_at, id);
CREATE INDEX inbound_messages_stranger
    ON inbound_messages (franchisor_id, location_id, from_number, received_at, id)
    WHERE contact_id IS NULL;
