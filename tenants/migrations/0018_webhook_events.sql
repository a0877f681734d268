-- Webhook events (docs/integrations.md): the triggers that write each event of the outbox
-- (webhook_emit, migration 0017) in the transaction of the row that is the event, so every writer
-- in tenants/ stays as it is and an event is never lost nor sent for a rolled-back change.
--
-- Each event fires once per real event: a trigger compares OLD with NEW and fires on the
-- transition only (a repeated status callback, a retried workflow activity, a duplicate webhook
-- change nothing, or write no row at all). Without an enabled endpoint subscribed to the type
-- webhook_emit writes nothing; a trigger that must look something up for the data (a text's
-- sequence, a click's link) first asks webhook_wanted, so an unsubscribed brand pays one probe
-- of a tiny index per event and nothing more. The cheap tests are WHEN clauses: most updates
-- (a status time, a body, a next wake) never call a function at all.
--
-- `data` holds resource names as the API spells them and non-personal facts, never a phone
-- number, a name, an email or a text's words (nor a consent event's source or raw text, a flagged
-- text's review reason, a link's target): every value is an id, a fixed word, a number or a time,
-- so a payload stays far below 20 KiB by construction. Absent (not null) when it does not apply.

-- Whether an enabled endpoint of the brand (or of location l) subscribes to etype: the guard
-- of a trigger that looks something up for the data (webhook_emit asks the same itself).
CREATE FUNCTION webhook_wanted(f text, l text, etype text) RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT EXISTS (
        SELECT 1 FROM webhook_endpoints e
        WHERE e.franchisor_id = f AND e.state = 'enabled'
          AND (e.location_id IS NULL OR e.location_id = l) AND etype = ANY (e.event_types)
    )
$$;

-- Resource names, as the API spells them.
CREATE FUNCTION webhook_location_name(f text, l text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'franchisors/' || f || '/locations/' || l
$$;

CREATE FUNCTION webhook_contact_name(f text, l text, c text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT 'franchisors/' || f || '/locations/' || l || '/contacts/' || c
$$;

-- a brand sequence (no location) or a location's own
CREATE FUNCTION webhook_sequence_name(f text, sl text, s text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN s IS NULL THEN NULL
                WHEN nullif(sl, '') IS NULL THEN 'franchisors/' || f || '/sequences/' || s
                ELSE 'franchisors/' || f || '/locations/' || sl || '/sequences/' || s END
$$;

CREATE FUNCTION webhook_enrollment_name(f text, l text, e text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN e IS NULL THEN NULL
                ELSE 'franchisors/' || f || '/locations/' || l || '/enrollments/' || e END
$$;

-- a ledger row: `<contact name>/messages/{id}` (ContactService.GetConversation)
CREATE FUNCTION webhook_message_name(f text, l text, c text, m bigint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN m IS NULL THEN NULL
                ELSE webhook_contact_name(f, l, c) || '/messages/' || m END
$$;

-- The facts every event of a contact carries: its location and its name.
CREATE FUNCTION webhook_contact_data(f text, l text, c text) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT jsonb_build_object('location', webhook_location_name(f, l),
                              'contact', webhook_contact_name(f, l, c))
$$;

-- ---------------------------------------------------------------------------------------------
-- Texts (outbound ledger rows: sequence texts and service texts such as a STOP confirmation):
-- message.sent when the carrier accepted it (its carrier id is first recorded: what reports
-- count as sent, whichever of the send or a status callback recorded it first), .delivered when
-- its status first becomes delivered or read, .failed when it first becomes failed or
-- undelivered (refused at send time or reported by a callback). Statuses only move forward
-- (tenants.inbound.delivery_status): each fires at most once per text.

CREATE FUNCTION webhook_messages() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o_sent boolean := false;
    o_delivered boolean := false;
    o_failed boolean := false;
    n_sent boolean := NEW.carrier_message_id IS NOT NULL;
    n_delivered boolean := NEW.status IN ('delivered', 'read');
    n_failed boolean := NEW.status IN ('failed', 'undelivered');
    sequence_location text;
    sequence_id text;
    facts jsonb;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        o_sent := OLD.carrier_message_id IS NOT NULL;
        o_delivered := OLD.status IN ('delivered', 'read');
        o_failed := OLD.status IN ('failed', 'undelivered');
    END IF;
    n_sent := n_sent AND NOT o_sent;
    n_delivered := n_delivered AND NOT o_delivered;
    n_failed := n_failed AND NOT o_failed;
    IF NOT (n_sent OR n_delivered OR n_failed) THEN
        RETURN NULL;
    END IF;
    IF NOT ((n_sent AND webhook_wanted(NEW.franchisor_id, NEW.location_id, 'message.sent'))
            OR (n_delivered
                AND webhook_wanted(NEW.franchisor_id, NEW.location_id, 'message.delivered'))
            OR (n_failed
                AND webhook_wanted(NEW.franchisor_id, NEW.location_id, 'message.failed'))) THEN
        RETURN NULL;
    END IF;
    IF NEW.enrollment_id IS NOT NULL THEN
        SELECT e.sequence_location_id, e.sequence_id INTO sequence_location, sequence_id
          FROM enrollments e WHERE e.id = NEW.enrollment_id;
    END IF;
    facts := webhook_contact_data(NEW.franchisor_id, NEW.location_id, NEW.contact_id)
        || jsonb_strip_nulls(jsonb_build_object(
            'message', webhook_message_name(NEW.franchisor_id, NEW.location_id, NEW.contact_id,
                                            NEW.id),
            'enrollment', webhook_enrollment_name(NEW.franchisor_id, NEW.location_id,
                                                  NEW.enrollment_id),
            'sequence', webhook_sequence_name(NEW.franchisor_id, sequence_location, sequence_id),
            'step', NEW.step_index,
            'kind', CASE WHEN NEW.enrollment_id IS NOT NULL THEN 'sequence' ELSE 'service' END,
            'segments', NEW.segments,
            'status', NEW.status));
    IF n_sent THEN
        PERFORM webhook_emit(NEW.franchisor_id, NEW.location_id, 'message.sent',
                             NEW.status_time, facts);
    END IF;
    IF n_delivered THEN
        PERFORM webhook_emit(NEW.franchisor_id, NEW.location_id, 'message.delivered',
                             coalesce(NEW.delivered_at, NEW.status_time), facts);
    END IF;
    IF n_failed THEN
        PERFORM webhook_emit(NEW.franchisor_id, NEW.location_id, 'message.failed',
                             NEW.status_time,
                             facts || jsonb_build_object('error_code', NEW.error_code));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_webhooks_insert AFTER INSERT ON messages
    FOR EACH ROW WHEN (NEW.direction = 'outbound'
                       AND (NEW.carrier_message_id IS NOT NULL
                            OR NEW.status IN ('delivered', 'read', 'failed', 'undelivered')))
    EXECUTE FUNCTION webhook_messages();
CREATE TRIGGER messages_webhooks_update AFTER UPDATE ON messages
    FOR EACH ROW WHEN (NEW.direction = 'outbound'
                       AND (OLD.status IS DISTINCT FROM NEW.status
                            OR OLD.carrier_message_id IS DISTINCT FROM NEW.carrier_message_id))
    EXECUTE FUNCTION webhook_messages();

-- ---------------------------------------------------------------------------------------------
-- Clicks: message.clicked for a person's click on a tracked link of a sent text, as reports
-- count human clicks (not a robot's, a link preview's or a HEAD look; not a link opened before
-- its text was sent, such as staff opening an approval's preview). Every visit is its own
-- link_clicks row, so each person's click fires once; `first_click` says whether it was the
-- first counted click of that link.

CREATE FUNCTION webhook_link_clicks() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k record;
    link record;
BEGIN
    IF NOT webhook_wanted(NEW.franchisor_id, NEW.location_id, 'message.clicked') THEN
        RETURN NULL;
    END IF;
    SELECT e.sequence_location_id, e.sequence_id INTO k
      FROM enrollments e WHERE e.id = NEW.enrollment_id;
    SELECT t.position, t.clicks INTO link FROM tracked_links t WHERE t.code = NEW.code;
    PERFORM webhook_emit(
        NEW.franchisor_id, NEW.location_id, 'message.clicked', NEW.clicked_at,
        webhook_contact_data(NEW.franchisor_id, NEW.location_id, NEW.contact_id)
        || jsonb_strip_nulls(jsonb_build_object(
            'message', webhook_message_name(NEW.franchisor_id, NEW.location_id, NEW.contact_id,
                                            NEW.message_id),
            'enrollment', webhook_enrollment_name(NEW.franchisor_id, NEW.location_id,
                                                  NEW.enrollment_id),
            'sequence', webhook_sequence_name(NEW.franchisor_id, k.sequence_location_id,
                                              k.sequence_id),
            'step', NEW.step_index,
            'link_position', link.position,
            'first_click', link.clicks = 1)));
    RETURN NULL;
END $$;
CREATE TRIGGER link_clicks_webhooks AFTER INSERT ON link_clicks
    FOR EACH ROW WHEN (NEW.human AND NEW.message_id IS NOT NULL)
    EXECUTE FUNCTION webhook_link_clicks();

-- ---------------------------------------------------------------------------------------------
-- Replies: reply.received when an inbound text of a known contact is classified a reply (not
-- STOP/HELP/START or another keyword; routing classifies the row right after its insert, in
-- the same transaction). A retried webhook finds its row and writes nothing; a reviewer
-- resolving a stranger's flagged text later (which may fill in a contact) is no new reply.
-- With the contact's running enrollment (the one the reply is signalled to), when there is one.

CREATE FUNCTION webhook_replies() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    IF NOT webhook_wanted(NEW.franchisor_id, NEW.location_id, 'reply.received') THEN
        RETURN NULL;
    END IF;
    SELECT e.id, e.sequence_location_id, e.sequence_id INTO k
      FROM enrollments e
     WHERE e.franchisor_id = NEW.franchisor_id AND e.location_id = NEW.location_id
       AND e.contact_id = NEW.contact_id
       AND e.status IN ('active', 'paused', 'awaiting_approval');
    PERFORM webhook_emit(
        NEW.franchisor_id, NEW.location_id, 'reply.received', NEW.received_at,
        webhook_contact_data(NEW.franchisor_id, NEW.location_id, NEW.contact_id)
        || jsonb_strip_nulls(jsonb_build_object(
            'message', webhook_message_name(NEW.franchisor_id, NEW.location_id, NEW.contact_id,
                                            NEW.message_id),
            'enrollment', webhook_enrollment_name(NEW.franchisor_id, NEW.location_id, k.id),
            'sequence', webhook_sequence_name(NEW.franchisor_id, k.sequence_location_id,
                                              k.sequence_id),
            'flagged_for_review', NEW.review_reason <> '')));
    RETURN NULL;
END $$;
CREATE TRIGGER inbound_messages_webhooks_insert AFTER INSERT ON inbound_messages
    FOR EACH ROW WHEN (NEW.classification = 'reply' AND NEW.contact_id IS NOT NULL
                       AND NEW.location_id IS NOT NULL)
    EXECUTE FUNCTION webhook_replies();
CREATE TRIGGER inbound_messages_webhooks_update AFTER UPDATE OF classification
    ON inbound_messages
    FOR EACH ROW WHEN (NEW.classification = 'reply' AND OLD.classification <> 'reply'
                       AND NEW.contact_id IS NOT NULL AND NEW.location_id IS NOT NULL)
    EXECUTE FUNCTION webhook_replies();

-- ---------------------------------------------------------------------------------------------
-- Consent: contact.opted_out for a revocation, contact.opted_in for a grant, when it changes
-- the contact's consent state: it is the contact's latest event by occurrence time (the state's
-- rule, tenants.contacts.consent) and the one before it, if any, is of the other kind. A second
-- STOP from an opted-out contact, an older grant imported after a later revocation, the same
-- evidence recorded again (no row) fire nothing. A brand-wide revocation reaches each of the
-- phone's contacts at the brand's other locations as a consent event of its own (scope
-- 'brand'): each fires at its location.

CREATE FUNCTION webhook_consent_events() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    etype text := CASE NEW.kind WHEN 'revoke' THEN 'contact.opted_out'
                                ELSE 'contact.opted_in' END;
    latest record;
    earlier text;
BEGIN
    IF NOT webhook_wanted(NEW.franchisor_id, NEW.location_id, etype) THEN
        RETURN NULL;
    END IF;
    SELECT (array_agg(e.id ORDER BY e.occurred_at DESC, e.id DESC))[1] AS id,
           (array_agg(e.kind ORDER BY e.occurred_at DESC, e.id DESC))[2] AS earlier_kind
      INTO latest
      FROM (SELECT c.id, c.kind, c.occurred_at FROM consent_events c
             WHERE c.franchisor_id = NEW.franchisor_id AND c.location_id = NEW.location_id
               AND c.contact_id = NEW.contact_id
             ORDER BY c.occurred_at DESC, c.id DESC LIMIT 2) e;
    earlier := latest.earlier_kind;
    IF latest.id IS DISTINCT FROM NEW.id OR earlier IS NOT DISTINCT FROM NEW.kind THEN
        RETURN NULL;  -- the contact's state does not change
    END IF;
    PERFORM webhook_emit(
        NEW.franchisor_id, NEW.location_id, etype, NEW.occurred_at,
        webhook_contact_data(NEW.franchisor_id, NEW.location_id, NEW.contact_id)
        || jsonb_build_object(
            'consent_event', webhook_contact_name(NEW.franchisor_id, NEW.location_id,
                                                  NEW.contact_id) || '/consentEvents/' || NEW.id,
            'channel', NEW.channel,
            'scope', NEW.scope));
    RETURN NULL;
END $$;
CREATE TRIGGER consent_events_webhooks AFTER INSERT ON consent_events
    FOR EACH ROW EXECUTE FUNCTION webhook_consent_events();

-- ---------------------------------------------------------------------------------------------
-- Enrollments (the workflows' read model: tenants.enrollment.records.record_transition).
-- * enrollment.started when its workflow's run is recorded (run_id set): the row is written
--   before the workflow is started, and a row whose workflow never started (exit reasons
--   start_failed, start_conflict) is no enrollment (as in reports) and fires nothing at all;
-- * enrollment.exited / enrollment.completed when its status first becomes exited / completed;
-- * approval.requested when its status becomes awaiting_approval (a step waits for staff);
-- * approval.decided when it leaves awaiting_approval: `status` is what the enrollment went on
--   to (active: approved, edited, skipped or timed out; exited: it ended while waiting, with its
--   exit reason). The decision itself is the workflow's: an approved or edited step's
--   message.sent follows.
-- A retried activity writing the same transition again changes no status: nothing fires.

CREATE FUNCTION webhook_enrollment_data(e enrollments) RETURNS jsonb
LANGUAGE sql IMMUTABLE AS $$
    SELECT webhook_contact_data(e.franchisor_id, e.location_id, e.contact_id)
        || jsonb_build_object(
            'enrollment', webhook_enrollment_name(e.franchisor_id, e.location_id, e.id),
            'sequence', webhook_sequence_name(e.franchisor_id, e.sequence_location_id,
                                              e.sequence_id),
            'sequence_version', e.sequence_version)
$$;

CREATE FUNCTION webhook_enrollments() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o_status text := CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END;
    o_run text := CASE WHEN TG_OP = 'UPDATE' THEN OLD.run_id ELSE '' END;
    never_started boolean := NEW.status = 'exited'
                             AND NEW.exit_reason IN ('start_failed', 'start_conflict');
    ended_at timestamptz := coalesce(NEW.ended_at, NEW.update_time);
BEGIN
    IF never_started THEN
        RETURN NULL;
    END IF;
    IF NEW.run_id <> '' AND o_run = '' THEN
        PERFORM webhook_emit(NEW.franchisor_id, NEW.location_id, 'enrollment.started',
                             NEW.enrolled_at, webhook_enrollment_data(NEW));
    END IF;
    IF NEW.status IS NOT DISTINCT FROM o_status THEN
        RETURN NULL;
    END IF;
    IF o_status = 'awaiting_approval' THEN
        PERFORM webhook_emit(
            NEW.franchisor_id, NEW.location_id, 'approval.decided', NEW.update_time,
            webhook_enrollment_data(NEW)
            || jsonb_build_object('step', OLD.current_step, 'status', NEW.status)
            || CASE WHEN NEW.status = 'exited'
                    THEN jsonb_build_object('exit_reason', coalesce(nullif(NEW.exit_reason, ''),
                                                                    'unknown'))
                    ELSE '{}' END);
    END IF;
    IF NEW.status = 'awaiting_approval' THEN
        PERFORM webhook_emit(
            NEW.franchisor_id, NEW.location_id, 'approval.requested', NEW.update_time,
            webhook_enrollment_data(NEW)
            || jsonb_strip_nulls(jsonb_build_object(
                'step', NEW.current_step,
                'deadline', to_char(NEW.next_wake_at AT TIME ZONE 'UTC',
                                    'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))));
    ELSIF NEW.status = 'exited' THEN
        PERFORM webhook_emit(
            NEW.franchisor_id, NEW.location_id, 'enrollment.exited', ended_at,
            webhook_enrollment_data(NEW)
            || jsonb_build_object('step', NEW.current_step,
                                  'exit_reason', coalesce(nullif(NEW.exit_reason, ''),
                                                          'unknown')));
    ELSIF NEW.status = 'completed' THEN
        PERFORM webhook_emit(
            NEW.franchisor_id, NEW.location_id, 'enrollment.completed', ended_at,
            webhook_enrollment_data(NEW) || jsonb_build_object('step', NEW.current_step));
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER enrollments_webhooks_insert AFTER INSERT ON enrollments
    FOR EACH ROW WHEN (NEW.run_id <> '' OR NEW.status <> 'active')
    EXECUTE FUNCTION webhook_enrollments();
CREATE TRIGGER enrollments_webhooks_update AFTER UPDATE ON enrollments
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
                       OR (OLD.run_id = '' AND NEW.run_id <> ''))
    EXECUTE FUNCTION webhook_enrollments();

-- ---------------------------------------------------------------------------------------------
-- Conversions: conversion.attributed when a purchase is credited to a text (a report_conversions
-- row with a message: last touch by click, delivery or coupon, migration 0016). A purchase no
-- text earned (basis 'none') and an order recorded again (no row) fire nothing.

CREATE FUNCTION webhook_conversions() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k record;
    f record;
BEGIN
    IF NOT webhook_wanted(NEW.franchisor_id, NEW.location_id, 'conversion.attributed') THEN
        RETURN NULL;
    END IF;
    SELECT m.contact_id, m.enrollment_id, m.step_index, e.sequence_location_id, e.sequence_id
      INTO k
      FROM messages m LEFT JOIN enrollments e ON e.id = m.enrollment_id
     WHERE m.id = NEW.message_id;
    SELECT click_window, delivery_window INTO f FROM franchisors WHERE id = NEW.franchisor_id;
    PERFORM webhook_emit(
        NEW.franchisor_id, NEW.location_id, 'conversion.attributed', NEW.occurred_at,
        webhook_contact_data(NEW.franchisor_id, NEW.location_id, NEW.contact_id)
        || jsonb_strip_nulls(jsonb_build_object(
            'activity', webhook_contact_name(NEW.franchisor_id, NEW.location_id,
                                             NEW.contact_id) || '/activities/' || NEW.activity_id,
            'order_id', NEW.order_id,
            'value_minor', NEW.value_minor,
            'currency_code', nullif(NEW.currency_code, ''),
            'basis', NEW.basis,
            'attribution_window_seconds', extract(epoch FROM CASE NEW.basis
                WHEN 'click' THEN f.click_window WHEN 'delivery' THEN f.delivery_window
                END)::bigint,
            'message', webhook_message_name(NEW.franchisor_id, NEW.location_id, k.contact_id,
                                            NEW.message_id),
            'enrollment', webhook_enrollment_name(NEW.franchisor_id, NEW.location_id,
                                                  k.enrollment_id),
            'sequence', webhook_sequence_name(NEW.franchisor_id, k.sequence_location_id,
                                              k.sequence_id),
            'step', k.step_index)));
    RETURN NULL;
END $$;
CREATE TRIGGER report_conversions_webhooks AFTER INSERT ON report_conversions
    FOR EACH ROW WHEN (NEW.message_id IS NOT NULL)
    EXECUTE FUNCTION webhook_conversions();
