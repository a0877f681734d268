-- The review queue: inbound texts flagged for a person to read (possible opt-outs) are resolved
-- over gRPC, Slack or the CLI. A resolution is final (a second, different one is refused): who
-- resolved it, how, what it did to consent, and an optional note are kept on the text's row.

ALTER TABLE inbound_messages
    ADD COLUMN resolution   text NOT NULL DEFAULT ''
        CHECK (resolution IN ('', 'opt_out', 'not_opt_out')),
    ADD COLUMN resolved_by  text NOT NULL DEFAULT '',   -- the principal's label
    ADD COLUMN review_note  text NOT NULL DEFAULT '',   -- the reviewer's words, optional
    ADD COLUMN review_effect text NOT NULL DEFAULT '';  -- what the resolution did to consent
ALTER TABLE inbound_messages ADD CONSTRAINT inbound_messages_resolved
    CHECK ((resolution = '') = (reviewed_at IS NULL));

-- ListFlaggedMessages: a location's (or a franchisor's) flagged texts, oldest first.
CREATE INDEX inbound_messages_flagged
    ON inbound_messages (franchisor_id, location_id, received_at, id)
    WHERE review_reason <> '' AND location_id IS NOT NULL;
