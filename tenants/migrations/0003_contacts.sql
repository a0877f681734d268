-- Contacts of a location, their consent events (append-only), activity, and the message ledger.

CREATE TABLE contacts (
    franchisor_id     text NOT NULL,
    location_id       text NOT NULL,
    id                text NOT NULL,
    phone_e164        text NOT NULL,
    first_name        text NOT NULL DEFAULT '',
    last_name         text NOT NULL DEFAULT '',
    email             text NOT NULL DEFAULT '',
    attrs             jsonb NOT NULL DEFAULT '{}',
    explicit_zone     text NOT NULL DEFAULT '',   -- as given; '' when none
    address_state     text NOT NULL DEFAULT '',   -- two-letter US state of the address, if known
    zones             text[] NOT NULL,            -- inferred IANA zones (several: send in overlap)
    zone_source       text NOT NULL CHECK (zone_source IN ('explicit', 'address', 'area_code',
                                                           'location_default')),
    states            text[] NOT NULL DEFAULT '{}',  -- US states whose rules may apply
    consent_state     text NOT NULL DEFAULT 'none' CHECK (consent_state IN ('none', 'granted',
                                                                            'revoked')),
    opted_out_at      timestamptz,                -- suppressed since; NULL when not suppressed
    last_reply_at     timestamptz,
    last_click_at     timestamptz,
    last_purchase_at  timestamptz,
    last_purchase_item text NOT NULL DEFAULT '',
    last_activity_at  timestamptz,
    -- the latest reply, click or purchase (the inactivity trigger's measure); NULL: never engaged
    last_engaged_at   timestamptz,
    create_time       timestamptz NOT NULL DEFAULT now(),
    update_time       timestamptz NOT NULL DEFAULT now(),
    version           bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (franchisor_id, location_id, id),
    FOREIGN KEY (franchisor_id, location_id) REFERENCES locations (franchisor_id, id)
);
CREATE UNIQUE INDEX contacts_phone ON contacts (franchisor_id, location_id, phone_e164);
CREATE INDEX contacts_engaged ON contacts (franchisor_id, location_id, last_engaged_at, id);

CREATE TABLE consent_events (
    id               bigserial PRIMARY KEY,
    franchisor_id    text NOT NULL,
    location_id      text NOT NULL,
    contact_id       text NOT NULL,
    phone_e164       text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('grant', 'revoke')),
    scope            text NOT NULL CHECK (scope IN ('location', 'brand')),
    occurred_at      timestamptz NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    channel          text NOT NULL,
    source           text NOT NULL DEFAULT '',
    disclosure_text  text NOT NULL DEFAULT '',
    disclosure_sha256 text NOT NULL DEFAULT '',
    ip_address       text NOT NULL DEFAULT '',
    user_agent       text NOT NULL DEFAULT '',
    raw_text         text NOT NULL DEFAULT '',
    recorded_by      text NOT NULL,
    FOREIGN KEY (franchisor_id, location_id, contact_id)
        REFERENCES contacts (franchisor_id, location_id, id)
);
CREATE INDEX consent_events_contact
    ON consent_events (franchisor_id, location_id, contact_id, occurred_at);
-- the same evidence recorded twice (a re-imported file) is one event
CREATE UNIQUE INDEX consent_events_evidence
    ON consent_events (franchisor_id, location_id, contact_id, kind, occurred_at, channel,
                       source, disclosure_sha256);

CREATE FUNCTION consent_events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent events are append-only';
END $$;
CREATE TRIGGER consent_events_append_only BEFORE UPDATE OR DELETE ON consent_events
    FOR EACH ROW EXECUTE FUNCTION consent_events_are_append_only();
CREATE TRIGGER consent_events_no_truncate BEFORE TRUNCATE ON consent_events
    FOR EACH STATEMENT EXECUTE FUNCTION consent_events_are_append_only();

CREATE TABLE activities (
    id             bigserial PRIMARY KEY,
    franchisor_id  text NOT NULL,
    location_id    text NOT NULL,
    contact_id     text NOT NULL,
    kind           text NOT NULL,
    occurred_at    timestamptz NOT NULL,
    reference      text,              -- the reporting system's id: one activity per reference
    item           text NOT NULL DEFAULT '',
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    recorded_by    text NOT NULL,
    FOREIGN KEY (franchisor_id, location_id, contact_id)
        REFERENCES contacts (franchisor_id, location_id, id)
);
CREATE INDEX activities_contact ON activities (franchisor_id, location_id, contact_id, occurred_at);
CREATE UNIQUE INDEX activities_reference
    ON activities (franchisor_id, location_id, contact_id, kind, reference)
    WHERE reference IS NOT NULL;

-- The message ledger: every outbound and inbound text of a contact.
CREATE TABLE messages (
    id                  bigserial PRIMARY KEY,
    franchisor_id       text NOT NULL,
    location_id         text NOT NULL,
    contact_id          text NOT NULL,
    direction           text NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    body                text NOT NULL,
    encoding            text NOT NULL DEFAULT '',
    segments            integer NOT NULL DEFAULT 0,
    enrollment_id       text,
    step_index          integer,
    template_revision   text NOT NULL DEFAULT '',
    idempotency_key     text UNIQUE,
    carrier             text NOT NULL DEFAULT '',
    carrier_message_id  text,
    status              text NOT NULL DEFAULT '',
    error_code          text NOT NULL DEFAULT '',
    create_time         timestamptz NOT NULL DEFAULT now(),
    status_time         timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (franchisor_id, location_id, contact_id)
        REFERENCES contacts (franchisor_id, location_id, id)
);
CREATE INDEX messages_conversation
    ON messages (franchisor_id, location_id, contact_id, create_time DESC, id DESC);
