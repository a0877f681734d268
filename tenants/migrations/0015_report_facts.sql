-- Reports (issue 16): the facts reports are made of, and the daily rollups they read.
--
-- Facts are written by the events themselves (a click, a purchase, a ledger status); the
-- attribution of a reply, an opt-out or a conversion to one message is decided once, when the
-- event is recorded, and kept (report_credits, report_conversions) so that it can be audited and
-- recounted. The rollups (report_days, report_day_reasons) are kept up to date by triggers in
-- the same transaction as the facts (migration 0016); `tenants.reports.rollups` recounts them
-- from the facts and checks they agree (`reengage report verify`).

-- The brand's reporting settings (docs/reporting.md).
ALTER TABLE franchisors
    ADD COLUMN reporting_time_zone text NOT NULL DEFAULT 'America/New_York',
    ADD COLUMN currency_code text NOT NULL DEFAULT 'USD',
    ADD COLUMN reply_window interval NOT NULL DEFAULT '7 days',
    ADD COLUMN click_window interval NOT NULL DEFAULT '5 days',
    ADD COLUMN delivery_window interval NOT NULL DEFAULT '24 hours',
    ADD COLUMN alert_opt_out_rate double precision NOT NULL DEFAULT 0.013,
    ADD COLUMN alert_delivery_rate double precision NOT NULL DEFAULT 0.90,
    ADD COLUMN alert_click_through_rate double precision NOT NULL DEFAULT 0.06;

-- A location's manager may get a weekly digest in the location's Slack channel.
ALTER TABLE locations ADD COLUMN weekly_digest boolean NOT NULL DEFAULT false;

-- The coupon code a sequence text carried ({{coupon:CODE}}), and when it was delivered.
ALTER TABLE messages
    ADD COLUMN coupon_code text NOT NULL DEFAULT '',
    ADD COLUMN delivered_at timestamptz;

-- A purchase's value, order id (one order is one conversion, whatever records it again; order
-- ids are a location's: each store runs its own till, so #1001 at two stores is two orders) and
-- coupon code.
ALTER TABLE activities
    ADD COLUMN order_id text,
    ADD COLUMN value_minor bigint,          -- in the currency's minor units (cents)
    ADD COLUMN currency_code text,
    ADD COLUMN coupon_code text NOT NULL DEFAULT '';
CREATE UNIQUE INDEX activities_order ON activities (franchisor_id, location_id, order_id)
    WHERE kind = 'purchase' AND order_id IS NOT NULL;

-- Every visit of a tracked link: a person's click, or a robot's or link preview's fetch
-- (counted apart, never in rates). No user agent is kept, only its class.
CREATE TABLE link_clicks (
    id              bigserial PRIMARY KEY,
    code            text NOT NULL REFERENCES tracked_links (code),
    franchisor_id   text NOT NULL,
    location_id     text NOT NULL,
    contact_id      text NOT NULL,
    enrollment_id   text NOT NULL,
    step_index      integer NOT NULL,
    message_id      bigint REFERENCES messages (id),  -- the sequence text that carried the link
    clicked_at      timestamptz NOT NULL,
    human           boolean NOT NULL,
    agent_class     text NOT NULL DEFAULT ''          -- 'person', 'robot', 'preview', 'head'
);
CREATE INDEX link_clicks_contact
    ON link_clicks (franchisor_id, location_id, contact_id, clicked_at DESC) WHERE human;
CREATE INDEX link_clicks_message ON link_clicks (message_id);

-- One credit per (kind, subject): the first click of a contact on a message ('click',
-- message id), an enrollment's first counted reply ('replier', enrollment id: repliers are
-- contacts, counted once per enrollment like contacts_delivered), an
-- opt-out ('opt_out', message id: a STOP and the carrier's 21610 for it count once), an
-- enrollment's first delivered text
-- ('delivered_contact', enrollment id), an enrollment's first conversion ('converter',
-- enrollment id). The insert that wins (ON CONFLICT DO NOTHING) is the one that counts.
CREATE TABLE report_credits (
    kind        text NOT NULL,
    subject     text NOT NULL,
    message_id  bigint NOT NULL REFERENCES messages (id),
    credited_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, subject)
);
CREATE INDEX report_credits_message ON report_credits (message_id);

-- Every purchase and the message it is credited to (last touch; NULL: no message earned it).
CREATE TABLE report_conversions (
    activity_id     bigint PRIMARY KEY REFERENCES activities (id),
    franchisor_id   text NOT NULL,
    location_id     text NOT NULL,
    contact_id      text NOT NULL,
    order_id        text,
    message_id      bigint REFERENCES messages (id),
    basis           text NOT NULL CHECK (basis IN ('click', 'delivery', 'coupon', 'none')),
    value_minor     bigint NOT NULL DEFAULT 0,
    currency_code   text NOT NULL DEFAULT '',
    occurred_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX report_conversions_order
    ON report_conversions (franchisor_id, location_id, order_id) WHERE order_id IS NOT NULL;
CREATE INDEX report_conversions_message ON report_conversions (message_id);

-- Daily rollups per location, sequence and step, in two reporting zones: 'L' the location's
-- day, 'B' the brand's (franchisors.reporting_time_zone). Every measure of a message (sent,
-- delivered, clicks, replies, opt-outs, conversions) is counted on the day the message was
-- sent, at its step; `enrolled` on the day and step 0 of the enrollment; exits on the day of
-- the exit, at the step the enrollment was on. A brand sequence has sequence_location_id ''.
CREATE TABLE report_days (
    franchisor_id         text NOT NULL,
    zone_kind             char(1) NOT NULL CHECK (zone_kind IN ('L', 'B')),
    day                   date NOT NULL,
    location_id           text NOT NULL,
    sequence_location_id  text NOT NULL,
    sequence_id           text NOT NULL,
    step_index            integer NOT NULL,
    enrolled              bigint NOT NULL DEFAULT 0,
    exited                bigint NOT NULL DEFAULT 0,
    sent                  bigint NOT NULL DEFAULT 0,
    segments              bigint NOT NULL DEFAULT 0,
    delivered             bigint NOT NULL DEFAULT 0,
    failed                bigint NOT NULL DEFAULT 0,
    contacts_delivered    bigint NOT NULL DEFAULT 0,
    human_clicks          bigint NOT NULL DEFAULT 0,
    unique_clickers       bigint NOT NULL DEFAULT 0,
    robot_clicks          bigint NOT NULL DEFAULT 0,
    repliers              bigint NOT NULL DEFAULT 0,
    opt_outs              bigint NOT NULL DEFAULT 0,
    conversions           bigint NOT NULL DEFAULT 0,
    converters            bigint NOT NULL DEFAULT 0,
    revenue_minor         bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (franchisor_id, zone_kind, day, location_id, sequence_location_id, sequence_id,
                 step_index)
);
CREATE INDEX report_days_location
    ON report_days (franchisor_id, location_id, zone_kind, day);

-- Counts by reason beside the daily rows: exits by exit reason ('exit'), failed and
-- undelivered texts by carrier error code ('error'; '' when the carrier gave none).
CREATE TABLE report_day_reasons (
    franchisor_id         text NOT NULL,
    zone_kind             char(1) NOT NULL CHECK (zone_kind IN ('L', 'B')),
    day                   date NOT NULL,
    location_id           text NOT NULL,
    sequence_location_id  text NOT NULL,
    sequence_id           text NOT NULL,
    step_index            integer NOT NULL,
    kind                  text NOT NULL CHECK (kind IN ('exit', 'error')),
    reason                text NOT NULL,
    count                 bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (franchisor_id, zone_kind, day, location_id, sequence_location_id, sequence_id,
                 step_index, kind, reason)
);
