-- Brand-wide suppression (compliance §2.9): a franchisor may make every opt-out cover every
-- location of the brand. tenants/brand_suppression.py spreads a revocation to the phone's
-- contacts at the other locations; this migration keeps the brand-level record, so a contact
-- created or imported later at any location starts suppressed, whatever path inserts it.

-- 'location' (the default): an opt-out covers the location it reached. 'brand': every location.
ALTER TABLE franchisors ADD COLUMN opt_out_scope text NOT NULL DEFAULT 'location'
    CHECK (opt_out_scope IN ('location', 'brand'));

-- One row per brand-wide revocation, kept forever (suppressions are never lifted here: a START
-- renews consent at the location it reached, in consent_events). Switching the franchisor back
-- to 'location' leaves these rows in force.
CREATE TABLE brand_suppressions (
    id             bigserial PRIMARY KEY,
    franchisor_id  text NOT NULL REFERENCES franchisors (id),
    phone_e164     text NOT NULL,
    -- where the revocation reached the platform
    location_id    text NOT NULL,
    contact_id     text NOT NULL,
    occurred_at    timestamptz NOT NULL,
    channel        text NOT NULL,
    source         text NOT NULL DEFAULT '',
    raw_text       text NOT NULL DEFAULT '',
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    recorded_by    text NOT NULL,
    FOREIGN KEY (franchisor_id, location_id, contact_id)
        REFERENCES contacts (franchisor_id, location_id, id)
);
-- the same revocation twice (a retried webhook, a repeated callback) is one row
CREATE UNIQUE INDEX brand_suppressions_evidence
    ON brand_suppressions (franchisor_id, phone_e164, occurred_at, channel, source);

CREATE FUNCTION brand_suppressions_are_forever() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'brand suppressions are kept forever';
END $$;
CREATE TRIGGER brand_suppressions_append_only BEFORE UPDATE OR DELETE ON brand_suppressions
    FOR EACH ROW EXECUTE FUNCTION brand_suppressions_are_forever();
CREATE TRIGGER brand_suppressions_no_truncate BEFORE TRUNCATE ON brand_suppressions
    FOR EACH STATEMENT EXECUTE FUNCTION brand_suppressions_are_forever();

-- The lock that orders a brand-wide revocation and a new contact of the same phone: the
-- revocation takes it exclusively before it locks any contact row, every contact insert takes
-- it shared before it looks for suppressions (a path that locks contact rows before it inserts,
-- an import, takes it shared first: the brand's lock always comes before contact rows). Whichever commits first, the other
-- sees it (each statement of a PL/pgSQL function reads a new snapshot). Phones share 16 locks
-- per brand, so a 1,000-row import batch holds at most 16 (the two-key form: its own key space).
CREATE FUNCTION brand_phone_lock_keys(franchisor text, phone text, OUT brand integer,
                                      OUT bucket integer) LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtext('brand-suppression:' || franchisor), hashtext(phone) & 15
$$;

-- A new contact whose phone the brand suppressed starts revoked, with the revocation copied
-- into its consent events (same time and channel, scope 'brand'; the source names the
-- brand_suppressions row, never the other location nor the contact's words: staff here read it).
CREATE FUNCTION contacts_start_brand_suppressed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k record;
    s record;
BEGIN
    SELECT * INTO k FROM brand_phone_lock_keys(NEW.franchisor_id, NEW.phone_e164);
    PERFORM pg_advisory_xact_lock_shared(k.brand, k.bucket);
    SELECT b.id, b.occurred_at, b.channel INTO s
      FROM brand_suppressions b
     WHERE b.franchisor_id = NEW.franchisor_id AND b.phone_e164 = NEW.phone_e164
     ORDER BY b.occurred_at DESC, b.id DESC LIMIT 1;
    IF NOT FOUND THEN
        RETURN NEW;
    END IF;
    IF TG_WHEN = 'BEFORE' THEN
        NEW.consent_state := 'revoked';
        NEW.opted_out_at := s.occurred_at;
    ELSE
        INSERT INTO consent_events (franchisor_id, location_id, contact_id, phone_e164, kind,
                                    scope, occurred_at, channel, source, raw_text, recorded_by)
        VALUES (NEW.franchisor_id, NEW.location_id, NEW.id, NEW.phone_e164, 'revoke', 'brand',
                s.occurred_at, s.channel, 'brand opt-out #' || s.id, '',
                'system:brand-suppression')
        ON CONFLICT DO NOTHING;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER contacts_brand_suppressed_state BEFORE INSERT ON contacts
    FOR EACH ROW EXECUTE FUNCTION contacts_start_brand_suppressed();
CREATE TRIGGER contacts_brand_suppressed_event AFTER INSERT ON contacts
    FOR EACH ROW EXECUTE FUNCTION contacts_start_brand_suppressed();
