-- Triggers: the inactivity scan's index, event-trigger follow-ups, the per-location daily
-- enrollment cap, and the record of every refused entry.

-- A location may cap how many contacts enter sequences per local day (0: no cap); the
-- scan leaves the rest for the next day, which smooths the load of a large first scan.
ALTER TABLE locations ADD COLUMN daily_enrollment_cap integer NOT NULL DEFAULT 0
    CHECK (daily_enrollment_cap >= 0);

-- The inactivity scan walks a location's quiet contacts in the order of their last engagement
-- (a contact that never engaged counts from when it was added), in pages.
CREATE INDEX contacts_quiet
    ON contacts (franchisor_id, location_id, (coalesce(last_engaged_at, create_time)), id);

-- The daily cap counts a location's enrollments of the day.
CREATE INDEX enrollments_location_day ON enrollments (franchisor_id, location_id, enrolled_at);

-- Every refused entry, with its reason, once per contact, sequence, path, reason and day
-- (an hourly scan does not write the same refusal 24 times).
CREATE TABLE enrollment_refusals (
    id                    bigserial PRIMARY KEY,
    franchisor_id         text NOT NULL,
    location_id           text NOT NULL,
    contact_id            text NOT NULL,
    sequence_location_id  text NOT NULL DEFAULT '',   -- '' for a brand sequence
    sequence_id           text NOT NULL,
    path                  text NOT NULL CHECK (path IN ('api', 'scan', 'event')),
    reason                text NOT NULL,
    detail                text NOT NULL DEFAULT '',
    refused_on            date NOT NULL,
    create_time           timestamptz NOT NULL DEFAULT now(),
    UNIQUE (franchisor_id, location_id, contact_id, sequence_location_id, sequence_id, path,
            reason, refused_on)
);
CREATE INDEX enrollment_refusals_recent
    ON enrollment_refusals (franchisor_id, location_id, create_time);

-- An activity that a sequence listens to owes an enrollment (delivered by the relay).
ALTER TABLE followups DROP CONSTRAINT followups_kind_check;
ALTER TABLE followups ADD CONSTRAINT followups_kind_check
    CHECK (kind IN ('signal_reply', 'signal_opted_out', 'signal_activity', 'service_text',
                    'enroll'));
ALTER TABLE followups ADD COLUMN sequence text NOT NULL DEFAULT '';
