-- Integrations (docs/integrations.md): outbound webhooks (Standard Webhooks 1.0) written as an
-- outbox in the transaction of the event that causes them, and the inbound event intake
-- (Segment Track-shaped events from CRMs, shops and booking systems).

-- An endpoint a franchisor (every location's events) or one location subscribes.
CREATE TABLE webhook_endpoints (
    franchisor_id         text NOT NULL REFERENCES franchisors (id),
    id                    text NOT NULL,            -- we<hex> or the caller's id
    location_id           text,                     -- NULL: the franchisor's endpoint
    url                   text NOT NULL,
    description           text NOT NULL DEFAULT '',
    event_types           text[] NOT NULL,
    state                 text NOT NULL DEFAULT 'enabled'
                              CHECK (state IN ('enabled', 'disabled')),
    -- why it is disabled: 'by_owner', 'gone' (answered 410), 'failing' (3 days of failures)
    disabled_reason       text NOT NULL DEFAULT '',
    disabled_time         timestamptz,
    -- the signing secret (`whsec_<base64>`); during a rotation's overlap the previous one
    -- signs too, until previous_secret_expire_time
    secret                text NOT NULL,
    previous_secret       text,
    previous_secret_expire_time timestamptz,
    -- the first failed attempt since the last success (NULL: not failing)
    failing_since         timestamptz,
    -- the endpoint asked us to wait (429/502/504 with Retry-After): no attempt before this
    backoff_until         timestamptz,
    created_by            text NOT NULL,
    create_time           timestamptz NOT NULL DEFAULT now(),
    update_time           timestamptz NOT NULL DEFAULT now(),
    version               bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (franchisor_id, id),
    FOREIGN KEY (franchisor_id, location_id) REFERENCES locations (franchisor_id, id)
);
-- what webhook_emit probes on every event: the brand's enabled endpoints (a handful)
CREATE INDEX webhook_endpoints_enabled ON webhook_endpoints (franchisor_id)
    WHERE state = 'enabled';

-- One event, as it is delivered to every endpoint subscribed to it: `{type, timestamp, data}`.
CREATE TABLE webhook_events (
    id                    bigserial PRIMARY KEY,    -- webhook-id: msg_<id>
    franchisor_id         text NOT NULL,
    location_id           text,
    type                  text NOT NULL,
    occurred_at           timestamptz NOT NULL,
    data                  jsonb NOT NULL,
    create_time           timestamptz NOT NULL DEFAULT now()
);

-- One event to one endpoint: its attempts on the retry schedule.
CREATE TABLE webhook_deliveries (
    id                    bigserial PRIMARY KEY,
    franchisor_id         text NOT NULL,
    endpoint_id           text NOT NULL,
    event_id              bigint NOT NULL REFERENCES webhook_events (id),
    state                 text NOT NULL DEFAULT 'pending'
                              CHECK (state IN ('pending', 'succeeded', 'failed')),
    attempts              integer NOT NULL DEFAULT 0,
    -- when the next attempt is due (pending only); a claimed attempt moves it ahead by its
    -- lease, so a worker that dies mid-attempt leaves it due again
    next_attempt_at       timestamptz,
    last_attempt_time     timestamptz,
    last_response_code    integer NOT NULL DEFAULT 0,     -- 0: no HTTP answer
    last_error            text NOT NULL DEFAULT '',        -- timeout, refused address, ...
    create_time           timestamptz NOT NULL DEFAULT now(),
    update_time           timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (franchisor_id, endpoint_id) REFERENCES webhook_endpoints (franchisor_id, id)
        ON DELETE CASCADE
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (franchisor_id, endpoint_id,
    next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_list ON webhook_deliveries (franchisor_id, endpoint_id, id DESC);
CREATE INDEX webhook_deliveries_overdue ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';

-- The outbox's one writer: an event of `etype` at location l of franchisor f. Writes the
-- event and one delivery per enabled endpoint subscribed to it (the franchisor's, and the
-- location's own), in the caller's transaction, and tells the dispatcher on commit. Without a
-- subscriber it writes nothing (one probe of a tiny index).
CREATE FUNCTION webhook_emit(f text, l text, etype text, at timestamptz, payload jsonb)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    event_id bigint;
    endpoint text;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM webhook_endpoints e
        WHERE e.franchisor_id = f AND e.state = 'enabled'
          AND (e.location_id IS NULL OR e.location_id = l) AND etype = ANY (e.event_types)
    ) THEN
        RETURN;
    END IF;
    INSERT INTO webhook_events (franchisor_id, location_id, type, occurred_at, data)
    VALUES (f, l, etype, at, payload) RETURNING id INTO event_id;
    -- FOR KEY SHARE (what the deliveries' foreign key takes anyway) SKIP LOCKED: an endpoint
    -- being deleted (the only writer that locks its row FOR UPDATE; updates take NO KEY
    -- UPDATE, which does not conflict) is skipped, so the event's own transaction (a send, a
    -- status callback, an inbound STOP) neither fails on the foreign key nor waits for it
    FOR endpoint IN
        INSERT INTO webhook_deliveries (franchisor_id, endpoint_id, event_id, next_attempt_at)
        SELECT e.franchisor_id, e.id, event_id, now() FROM webhook_endpoints e
        WHERE e.franchisor_id = f AND e.state = 'enabled'
          AND (e.location_id IS NULL OR e.location_id = l) AND etype = ANY (e.event_types)
        FOR KEY SHARE OF e SKIP LOCKED
        RETURNING endpoint_id
    LOOP
        PERFORM pg_notify('reengage_webhooks', f || '/' || endpoint);
    END LOOP;
END $$;

-- A contact's id in another system (a CRM, a shop): one per source, unique per location and
-- source, so the source can address the contact by its own id.
CREATE TABLE contact_external_ids (
    franchisor_id         text NOT NULL,
    location_id           text NOT NULL,
    contact_id            text NOT NULL,
    source                text NOT NULL,
    external_id           text NOT NULL,
    PRIMARY KEY (franchisor_id, location_id, contact_id, source),
    UNIQUE (franchisor_id, location_id, source, external_id),
    FOREIGN KEY (franchisor_id, location_id, contact_id)
        REFERENCES contacts (franchisor_id, location_id, id) ON DELETE CASCADE
);

-- Which activity kind an intake event name records, per franchisor: NULL is the defaults
-- (tenants.integrations.mapping), a JSON object {event name: activity kind} replaces them.
ALTER TABLE franchisors ADD COLUMN event_mapping jsonb;

-- Intake events accepted, by their messageId: a replay has no second effect.
CREATE TABLE integration_events (
    franchisor_id         text NOT NULL,
    message_id            text NOT NULL,
    location_id           text NOT NULL,
    contact_id            text NOT NULL,
    activity_id           bigint,
    event_name            text NOT NULL,
    received_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (franchisor_id, message_id)
);
