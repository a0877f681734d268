-- Inbound texts as the carrier delivered them, tracked links and their clicks, and the
-- follow-ups (workflow signals, service texts) that the edge owes after recording one.

-- Every inbound webhook that was accepted, recorded before the webhook answers. One row per
-- carrier message id: a retried webhook finds its row and has no second effect. Routing may
-- find no location (unknown sender number) or no contact: the row is kept all the same.
CREATE TABLE inbound_messages (
    id                  bigserial PRIMARY KEY,
    carrier             text NOT NULL,
    carrier_message_id  text NOT NULL,
    from_number         text NOT NULL,
    to_number           text NOT NULL,
    body                text NOT NULL,
    params              jsonb NOT NULL DEFAULT '{}',   -- every field the carrier sent
    franchisor_id       text,
    location_id         text,
    contact_id          text,
    classification      text NOT NULL CHECK (classification IN ('opt_out', 'help', 'start',
                                                                  'reply', 'unrouted')),
    keyword             text NOT NULL DEFAULT '',
    review_reason       text NOT NULL DEFAULT '',      -- '' unless flagged for review
    reviewed_at         timestamptz,
    message_id          bigint REFERENCES messages (id), -- the ledger row (routed texts)
    received_at         timestamptz NOT NULL DEFAULT now(),
    UNIQUE (carrier, carrier_message_id)
);
CREATE INDEX inbound_messages_review ON inbound_messages (received_at)
    WHERE review_reason <> '' AND reviewed_at IS NULL;

-- Tracked links: one code per message and link, allocated when the step is prepared (so a
-- prepared text already carries its real codes), stable across re-preparations; a link whose
-- target changed (a new template revision) gets a new code, and old codes keep working.
CREATE TABLE tracked_links (
    code            text PRIMARY KEY,
    franchisor_id   text NOT NULL,
    location_id     text NOT NULL,
    contact_id      text NOT NULL,
    enrollment_id   text NOT NULL,
    step_index      integer NOT NULL,
    position        integer NOT NULL,               -- the link's place among the step's links
    target_url      text NOT NULL,
    create_time     timestamptz NOT NULL DEFAULT now(),
    clicks          integer NOT NULL DEFAULT 0,
    first_click_at  timestamptz,
    last_click_at   timestamptz,
    UNIQUE (enrollment_id, step_index, target_url),
    FOREIGN KEY (franchisor_id, location_id, contact_id)
        REFERENCES contacts (franchisor_id, location_id, id)
);

-- What the edge still owes after it recorded an inbound text or a click: a signal to the
-- enrollment's workflow, or a service text (opt-out confirmation, HELP answer). Written in the
-- transaction that records the event; a relay delivers it with retries (nothing is lost when
-- Temporal or the carrier is briefly unreachable).
CREATE TABLE followups (
    id               bigserial PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('signal_reply', 'signal_opted_out',
                                                   'signal_activity', 'service_text')),
    franchisor_id    text NOT NULL,
    location_id      text NOT NULL,
    contact_id       text NOT NULL,
    enrollment_id    text NOT NULL DEFAULT '',      -- signals: the enrollment addressed
    workflow_id      text NOT NULL DEFAULT '',
    run_id           text NOT NULL DEFAULT '',      -- its run; '' while its start is in flight
    event_id         text NOT NULL,                 -- the signal's dedupe id / the text's key
    activity_kind    text NOT NULL DEFAULT '',
    body             text NOT NULL DEFAULT '',      -- service_text: what to send
    from_number      text NOT NULL DEFAULT '',
    expires_at       timestamptz,                   -- not done by then: dropped (confirmations)
    create_time      timestamptz NOT NULL DEFAULT now(),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    done_at          timestamptz,
    outcome          text NOT NULL DEFAULT '',      -- delivered, no_run, expired, failed: why
    last_error       text NOT NULL DEFAULT '',
    UNIQUE (kind, event_id, contact_id)
);
CREATE INDEX followups_due ON followups (next_attempt_at) WHERE done_at IS NULL;

-- Status callbacks find their ledger row by the carrier's id.
CREATE INDEX messages_carrier_id ON messages (carrier, carrier_message_id)
    WHERE carrier_message_id IS NOT NULL;
