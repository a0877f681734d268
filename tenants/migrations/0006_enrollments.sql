-- Enrollments (the read model of the enrollment workflows) and sender pacing.

CREATE TABLE enrollments (
    id                    text PRIMARY KEY,         -- e<hex>: opaque, no personal data
    workflow_id           text NOT NULL,            -- one per contact and location (hashed)
    run_id                text NOT NULL DEFAULT '', -- this enrollment's run of that workflow
    franchisor_id         text NOT NULL,
    location_id           text NOT NULL,
    contact_id            text NOT NULL,
    sequence_location_id  text,                     -- NULL: a brand sequence
    sequence_id           text NOT NULL,
    sequence_version      bigint NOT NULL,
    definition            jsonb NOT NULL,           -- the definition the enrollment runs
    status                text NOT NULL CHECK (status IN ('active', 'paused',
                              'awaiting_approval', 'completed', 'exited')),
    exit_reason           text NOT NULL DEFAULT '',
    current_step          integer NOT NULL DEFAULT 0,
    next_wake_at          timestamptz,
    enrolled_at           timestamptz NOT NULL,
    ended_at              timestamptz,
    enrolled_by           text NOT NULL,
    update_time           timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (franchisor_id, location_id, contact_id)
        REFERENCES contacts (franchisor_id, location_id, id)
);
-- at most one running enrollment per contact per location
CREATE UNIQUE INDEX enrollments_one_active ON enrollments (franchisor_id, location_id, contact_id)
    WHERE status IN ('active', 'paused', 'awaiting_approval');
CREATE INDEX enrollments_list ON enrollments (franchisor_id, location_id, id);
CREATE INDEX enrollments_contact
    ON enrollments (franchisor_id, location_id, contact_id, enrolled_at DESC);

-- The next free send slot per sender number: paces sends across every worker.
CREATE TABLE sender_pacing (
    phone_number  text PRIMARY KEY,
    next_slot     timestamptz NOT NULL
);

ALTER TABLE messages ADD COLUMN from_number text NOT NULL DEFAULT '';
ALTER TABLE messages ADD COLUMN to_number text NOT NULL DEFAULT '';

-- What the development carrier ("outbox") delivered: one row per ledger message at most, so
-- the ledger and the carrier's log can be compared after crashes.
CREATE TABLE outbox_deliveries (
    message_id    bigint PRIMARY KEY REFERENCES messages (id),
    from_number   text NOT NULL,
    to_number     text NOT NULL,
    body          text NOT NULL,
    delivered_at  timestamptz NOT NULL DEFAULT now()
);
