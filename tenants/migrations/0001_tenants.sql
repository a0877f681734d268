-- The tenant tree, staff, API keys and the audit log.

CREATE TABLE franchisors (
    id            text PRIMARY KEY,
    display_name  text NOT NULL,
    create_time   timestamptz NOT NULL DEFAULT now(),
    update_time   timestamptz NOT NULL DEFAULT now(),
    version       bigint NOT NULL DEFAULT 1
);

CREATE TABLE locations (
    franchisor_id      text NOT NULL REFERENCES franchisors (id),
    id                 text NOT NULL,
    display_name       text NOT NULL,
    time_zone          text NOT NULL,
    region_code        text NOT NULL DEFAULT 'US',
    -- send window in minutes after local midnight, and ISO weekdays (1 = Monday)
    send_window_start  smallint NOT NULL DEFAULT 540,
    send_window_end    smallint NOT NULL DEFAULT 1200,
    send_days          smallint[] NOT NULL DEFAULT '{1,2,3,4,5,6,7}',
    slack_channel_id   text NOT NULL DEFAULT '',
    create_time        timestamptz NOT NULL DEFAULT now(),
    update_time        timestamptz NOT NULL DEFAULT now(),
    version            bigint NOT NULL DEFAULT 1,
    PRIMARY KEY (franchisor_id, id),
    CHECK (send_window_start >= 480 AND send_window_end <= 1260
           AND send_window_start < send_window_end)
);

-- A sender number routes inbound texts to exactly one location.
CREATE TABLE location_sender_numbers (
    phone_number   text PRIMARY KEY,
    franchisor_id  text NOT NULL,
    location_id    text NOT NULL,
    position       smallint NOT NULL,
    FOREIGN KEY (franchisor_id, location_id) REFERENCES locations (franchisor_id, id)
);
CREATE INDEX location_sender_numbers_location
    ON location_sender_numbers (franchisor_id, location_id, position);

CREATE TABLE staff_members (
    franchisor_id  text NOT NULL REFERENCES franchisors (id),
    location_id    text,               -- NULL: franchisor scope
    id             text NOT NULL,
    display_name   text NOT NULL,
    role           text NOT NULL CHECK (role IN ('franchisor_admin', 'franchisor_viewer',
                                                 'location_manager', 'location_staff')),
    slack_user_id  text,
    email          text NOT NULL DEFAULT '',
    create_time    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (franchisor_id, location_id) REFERENCES locations (franchisor_id, id),
    CHECK ((location_id IS NULL) = (role IN ('franchisor_admin', 'franchisor_viewer')))
);
CREATE UNIQUE INDEX staff_members_name
    ON staff_members (franchisor_id, coalesce(location_id, ''), id);
CREATE UNIQUE INDEX staff_members_slack_user
    ON staff_members (franchisor_id, slack_user_id) WHERE slack_user_id IS NOT NULL;

CREATE TABLE api_keys (
    lookup_id      text PRIMARY KEY,   -- the public half of the bearer token
    franchisor_id  text REFERENCES franchisors (id),   -- NULL: operator key
    location_id    text,
    id             text NOT NULL,      -- the resource id within its scope
    display_name   text NOT NULL,
    role           text NOT NULL CHECK (role IN ('operator', 'franchisor_admin',
                                                 'franchisor_viewer', 'location_manager',
                                                 'location_staff')),
    secret_sha256  bytea NOT NULL,
    key_prefix     text NOT NULL,
    created_by     text NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now(),
    revoke_time    timestamptz,
    FOREIGN KEY (franchisor_id, location_id) REFERENCES locations (franchisor_id, id),
    CHECK ((franchisor_id IS NULL) = (role = 'operator')),
    CHECK ((location_id IS NULL) = (role IN ('operator', 'franchisor_admin',
                                             'franchisor_viewer')))
);
CREATE UNIQUE INDEX api_keys_name
    ON api_keys (coalesce(franchisor_id, ''), coalesce(location_id, ''), id);

-- Who did what, when. Append-only.
CREATE TABLE audit_log (
    id             bigserial PRIMARY KEY,
    occurred_at    timestamptz NOT NULL DEFAULT now(),
    principal      text NOT NULL,
    action         text NOT NULL,
    resource       text NOT NULL,
    franchisor_id  text,
    details        jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_franchisor ON audit_log (franchisor_id, occurred_at);

CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
