-- Slack chat-ops: the brand channel, one thread per contact per channel, Slack event ids
-- already handled, and staff notifications as follow-ups delivered by the relay.

-- The franchisor's brand channel: location overrides of brand templates wait for approval there.
ALTER TABLE franchisors ADD COLUMN slack_channel_id text NOT NULL DEFAULT '';

-- Each contact has one thread per channel: the root message the bot posted, its ts.
CREATE TABLE slack_threads (
    channel_id     text NOT NULL,
    franchisor_id  text NOT NULL,
    location_id    text NOT NULL,
    contact_id     text NOT NULL,
    thread_ts      text NOT NULL,
    create_time    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, franchisor_id, location_id, contact_id)
);
CREATE INDEX slack_threads_by_ts ON slack_threads (channel_id, thread_ts);

-- Events API deliveries already handled: Slack's retries (X-Slack-Retry-Num) of the same
-- event id have no second effect.
CREATE TABLE slack_events (
    event_id      text PRIMARY KEY,
    receive_time  timestamptz NOT NULL DEFAULT now()
);

-- A notification for staff (reply received, approval requested, enrollment exited, opt-out,
-- override submitted) is a follow-up written with the event; the relay hands it to Slack (or
-- the log) and retries while Slack is away. contact_id is '' for notices about no contact.
ALTER TABLE followups DROP CONSTRAINT followups_kind_check;
ALTER TABLE followups ADD CONSTRAINT followups_kind_check
    CHECK (kind IN ('signal_reply', 'signal_opted_out', 'signal_activity', 'service_text',
                    'enroll', 'notify'));
ALTER TABLE followups ADD COLUMN payload jsonb NOT NULL DEFAULT '{}';

-- The approval messages the bot posted, with their blocks: closed when someone decides in Slack;
-- otherwise rewritten (buttons removed) when the step stops waiting — decided over the API or
-- the CLI, timed out, or the enrollment ended.
CREATE TABLE slack_approval_posts (
    channel_id     text NOT NULL,
    message_ts     text NOT NULL,
    enrollment_id  text NOT NULL,
    step_index     integer NOT NULL,
    blocks         jsonb NOT NULL,
    closed         boolean NOT NULL DEFAULT false,
    create_time    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (channel_id, message_ts)
);
CREATE INDEX slack_approval_posts_open ON slack_approval_posts (enrollment_id) WHERE NOT closed;

-- `/reengage stats` counts a location's replies of the last 30 days.
CREATE INDEX inbound_messages_location
    ON inbound_messages (franchisor_id, location_id, received_at);
