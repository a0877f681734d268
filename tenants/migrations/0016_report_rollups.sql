-- Reports (issue 16): the triggers that keep the daily rollups (report_days,
-- report_day_reasons) up to date in the same transaction as the facts that change them, the
-- attribution of replies, opt-outs and purchases (decided once, when the event is recorded, and
-- kept in report_credits / report_conversions), and the recount from facts alone that
-- `tenants.reports.rollups` compares the rollups with (`reengage report verify`) and rebuilds
-- them from (a changed reporting zone). docs/reporting.md states every definition for users.
--
-- What counts, everywhere: a "sequence text" is an outbound ledger row with an enrollment and a
-- step whose enrollment row exists; every measure of a text is counted on the day it was
-- created (messages.create_time, in both zones), at its step, its enrollment's sequence and its
-- location. A text "the carrier accepted" has a carrier_message_id.
--
-- The counters follow the facts' state, not their history: `delivered` is the number of texts
-- whose status is delivered or read, `sent` the number with a carrier id, `enrolled` the number
-- of enrollment rows (less those whose workflow never started), and so on. A trigger adds the
-- row's new contribution and takes back its old one, so a repeated status callback (the same
-- status twice) changes nothing, and the recount (report_recount) equals the rollups whatever
-- path wrote the facts. "Once" measures (contacts delivered, unique clickers, repliers,
-- opt-outs, converters) are report_credits rows: the insert that wins counts.
--
-- Concurrency: every rollup write is one INSERT ... ON CONFLICT DO UPDATE (row-locked, both
-- zones in one statement, 'L' before 'B'), under a shared per-brand advisory lock that a
-- rebuild takes exclusively (a rebuild never races a writer of the same brand).

-- Attribution looks: a click's text by (enrollment, step); a coupon at a location.
CREATE INDEX messages_enrollment_step
    ON messages (enrollment_id, step_index, create_time DESC, id DESC)
    WHERE enrollment_id IS NOT NULL;
CREATE INDEX messages_location_coupon
    ON messages (franchisor_id, location_id, lower(coupon_code), create_time DESC, id DESC)
    WHERE coupon_code <> '' AND enrollment_id IS NOT NULL;

-- The per-brand lock key of rollup writes (one bigint: its own key space).
CREATE FUNCTION report_lock_key(franchisor text) RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended('report-rollups:' || franchisor, 0)
$$;

-- Adds increments to one (location, sequence, step) at the days of instant `p_at` in the
-- location's zone ('L') and the brand's reporting zone ('B'): one statement, both rows.
CREATE FUNCTION report_add(
    p_franchisor text, p_location text, p_sequence_location text, p_sequence text,
    p_step integer, p_at timestamptz,
    enrolled bigint DEFAULT 0, exited bigint DEFAULT 0, sent bigint DEFAULT 0,
    segments bigint DEFAULT 0, delivered bigint DEFAULT 0, failed bigint DEFAULT 0,
    contacts_delivered bigint DEFAULT 0, human_clicks bigint DEFAULT 0,
    unique_clickers bigint DEFAULT 0, robot_clicks bigint DEFAULT 0, repliers bigint DEFAULT 0,
    opt_outs bigint DEFAULT 0, conversions bigint DEFAULT 0, converters bigint DEFAULT 0,
    revenue_minor bigint DEFAULT 0
) RETURNS void LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM pg_advisory_xact_lock_shared(report_lock_key(p_franchisor));
    INSERT INTO report_days AS d (franchisor_id, zone_kind, day, location_id,
        sequence_location_id, sequence_id, step_index, enrolled, exited, sent, segments,
        delivered, failed, contacts_delivered, human_clicks, unique_clickers, robot_clicks,
        repliers, opt_outs, conversions, converters, revenue_minor)
    SELECT p_franchisor, z.kind, (p_at AT TIME ZONE z.tz)::date, p_location,
           p_sequence_location, p_sequence, p_step, report_add.enrolled, report_add.exited,
           report_add.sent, report_add.segments, report_add.delivered, report_add.failed,
           report_add.contacts_delivered, report_add.human_clicks, report_add.unique_clickers,
           report_add.robot_clicks, report_add.repliers, report_add.opt_outs,
           report_add.conversions, report_add.converters, report_add.revenue_minor
      FROM locations l
      JOIN franchisors f ON f.id = l.franchisor_id
     CROSS JOIN LATERAL (VALUES ('L', l.time_zone), ('B', f.reporting_time_zone)) z (kind, tz)
     WHERE l.franchisor_id = p_franchisor AND l.id = p_location
     ORDER BY z.kind DESC  -- 'L' before 'B': every writer locks the two rows in one order
    ON CONFLICT (franchisor_id, zone_kind, day, location_id, sequence_location_id, sequence_id,
                 step_index)
    DO UPDATE SET enrolled = d.enrolled + EXCLUDED.enrolled,
                  exited = d.exited + EXCLUDED.exited,
                  sent = d.sent + EXCLUDED.sent,
                  segments = d.segments + EXCLUDED.segments,
                  delivered = d.delivered + EXCLUDED.delivered,
                  failed = d.failed + EXCLUDED.failed,
                  contacts_delivered = d.contacts_delivered + EXCLUDED.contacts_delivered,
                  human_clicks = d.human_clicks + EXCLUDED.human_clicks,
                  unique_clickers = d.unique_clickers + EXCLUDED.unique_clickers,
                  robot_clicks = d.robot_clicks + EXCLUDED.robot_clicks,
                  repliers = d.repliers + EXCLUDED.repliers,
                  opt_outs = d.opt_outs + EXCLUDED.opt_outs,
                  conversions = d.conversions + EXCLUDED.conversions,
                  converters = d.converters + EXCLUDED.converters,
                  revenue_minor = d.revenue_minor + EXCLUDED.revenue_minor;
END $$;

-- Adds `p_count` to a reason row ('exit' by exit reason, 'error' by carrier error code) beside
-- the daily rows, in both zones, one statement.
CREATE FUNCTION report_add_reason(
    p_franchisor text, p_location text, p_sequence_location text, p_sequence text,
    p_step integer, p_at timestamptz, p_kind text, p_reason text, p_count bigint
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(report_lock_key(p_franchisor));
    INSERT INTO report_day_reasons AS r (franchisor_id, zone_kind, day, location_id,
        sequence_location_id, sequence_id, step_index, kind, reason, count)
    SELECT p_franchisor, z.kind, (p_at AT TIME ZONE z.tz)::date, p_location,
           p_sequence_location, p_sequence, p_step, p_kind, p_reason, p_count
      FROM locations l
      JOIN franchisors f ON f.id = l.franchisor_id
     CROSS JOIN LATERAL (VALUES ('L', l.time_zone), ('B', f.reporting_time_zone)) z (kind, tz)
     WHERE l.franchisor_id = p_franchisor AND l.id = p_location
     ORDER BY z.kind DESC
    ON CONFLICT (franchisor_id, zone_kind, day, location_id, sequence_location_id, sequence_id,
                 step_index, kind, reason)
    DO UPDATE SET count = r.count + EXCLUDED.count;
END $$;

-- The rollup key of a sequence text (NULL fields: not a sequence text).
CREATE FUNCTION report_text_key(
    p_message bigint, OUT franchisor_id text, OUT location_id text,
    OUT sequence_location_id text, OUT sequence_id text, OUT step_index integer,
    OUT create_time timestamptz, OUT enrollment_id text
) LANGUAGE sql STABLE AS $$
    SELECT m.franchisor_id, m.location_id, coalesce(e.sequence_location_id, ''), e.sequence_id,
           m.step_index, m.create_time, m.enrollment_id
      FROM messages m JOIN enrollments e ON e.id = m.enrollment_id
     WHERE m.id = p_message AND m.direction = 'outbound' AND m.step_index IS NOT NULL
$$;

-- Credits one "once" measure to a sequence text: true when this insert won.
CREATE FUNCTION report_credit(p_kind text, p_subject text, p_message bigint)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    won integer;
BEGIN
    INSERT INTO report_credits (kind, subject, message_id) VALUES (p_kind, p_subject, p_message)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS won = ROW_COUNT;
    RETURN won > 0;
END $$;

-- ---------------------------------------------------------------------------------------------
-- Enrollments: enrolled on enrolled_at's day at step 0; an exit on ended_at's day at the step the
-- enrollment was on, with its reason ('completed'; the exit reason, '' → 'unknown'). A row whose
-- workflow never started (exit reasons start_failed, start_conflict) is no enrollment: it counts
-- for nothing (its `enrolled` is taken back).

CREATE FUNCTION report_enrollment_never_started(status text, exit_reason text)
RETURNS boolean LANGUAGE sql IMMUTABLE AS $$
    SELECT status = 'exited' AND exit_reason IN ('start_failed', 'start_conflict')
$$;

CREATE FUNCTION report_enrollment_exit_reason(status text, exit_reason text)
RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN report_enrollment_never_started(status, exit_reason) THEN NULL
        WHEN status = 'completed' THEN 'completed'
        WHEN status = 'exited' THEN coalesce(nullif(exit_reason, ''), 'unknown')
    END
$$;

CREATE FUNCTION report_enrollments() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    o_enrolled boolean := false;
    n_enrolled boolean := NOT report_enrollment_never_started(NEW.status, NEW.exit_reason);
    o_reason text;
    n_reason text := report_enrollment_exit_reason(NEW.status, NEW.exit_reason);
    o_ended timestamptz;
    n_ended timestamptz := coalesce(NEW.ended_at, NEW.update_time);
BEGIN
    IF TG_OP = 'UPDATE' THEN
        o_enrolled := NOT report_enrollment_never_started(OLD.status, OLD.exit_reason);
        o_reason := report_enrollment_exit_reason(OLD.status, OLD.exit_reason);
        o_ended := coalesce(OLD.ended_at, OLD.update_time);
    END IF;
    -- enrolled: the old row's count out, the new row's in, when either differs
    IF TG_OP = 'INSERT' OR o_enrolled IS DISTINCT FROM n_enrolled
       OR OLD.location_id IS DISTINCT FROM NEW.location_id
       OR OLD.sequence_location_id IS DISTINCT FROM NEW.sequence_location_id
       OR OLD.sequence_id IS DISTINCT FROM NEW.sequence_id
       OR OLD.enrolled_at IS DISTINCT FROM NEW.enrolled_at THEN
        IF o_enrolled THEN
            PERFORM report_add(OLD.franchisor_id, OLD.location_id,
                               coalesce(OLD.sequence_location_id, ''), OLD.sequence_id, 0,
                               OLD.enrolled_at, enrolled => -1);
        END IF;
        IF n_enrolled THEN
            PERFORM report_add(NEW.franchisor_id, NEW.location_id,
                               coalesce(NEW.sequence_location_id, ''), NEW.sequence_id, 0,
                               NEW.enrolled_at, enrolled => 1);
        END IF;
    END IF;
    -- the exit
    IF o_reason IS NULL AND n_reason IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND o_reason IS NOT DISTINCT FROM n_reason
       AND o_ended IS NOT DISTINCT FROM n_ended AND OLD.current_step = NEW.current_step
       AND OLD.location_id = NEW.location_id
       AND OLD.sequence_location_id IS NOT DISTINCT FROM NEW.sequence_location_id
       AND OLD.sequence_id = NEW.sequence_id THEN
        RETURN NULL;
    END IF;
    IF o_reason IS NOT NULL THEN
        PERFORM report_add(OLD.franchisor_id, OLD.location_id,
                           coalesce(OLD.sequence_location_id, ''), OLD.sequence_id,
                           OLD.current_step, o_ended, exited => -1);
        PERFORM report_add_reason(OLD.franchisor_id, OLD.location_id,
                                  coalesce(OLD.sequence_location_id, ''), OLD.sequence_id,
                                  OLD.current_step, o_ended, 'exit', o_reason, -1);
    END IF;
    IF n_reason IS NOT NULL THEN
        PERFORM report_add(NEW.franchisor_id, NEW.location_id,
                           coalesce(NEW.sequence_location_id, ''), NEW.sequence_id,
                           NEW.current_step, n_ended, exited => 1);
        PERFORM report_add_reason(NEW.franchisor_id, NEW.location_id,
                                  coalesce(NEW.sequence_location_id, ''), NEW.sequence_id,
                                  NEW.current_step, n_ended, 'exit', n_reason, 1);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER enrollments_report AFTER INSERT OR UPDATE ON enrollments
    FOR EACH ROW EXECUTE FUNCTION report_enrollments();

-- ---------------------------------------------------------------------------------------------
-- Sequence texts: sent (+ segments) once the carrier accepted them (a carrier id), delivered
-- while delivered or read, failed while failed or undelivered (by error code), contacts
-- delivered at an enrollment's first delivered text. delivered_at is set when the status first
-- becomes delivered or read (the reported status time), for the delivery window.

CREATE FUNCTION report_messages_delivered_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IN ('delivered', 'read') AND NEW.delivered_at IS NULL THEN
        NEW.delivered_at := CASE
            WHEN TG_OP = 'UPDATE' AND NEW.status_time IS NOT DISTINCT FROM OLD.status_time
            THEN now() ELSE coalesce(NEW.status_time, now()) END;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER messages_delivered_at BEFORE INSERT OR UPDATE OF status ON messages
    FOR EACH ROW EXECUTE FUNCTION report_messages_delivered_at();

-- A sequence text's whole contribution (its state and every credit, click and conversion of
-- it), added (sign 1) or taken back (-1) at its key: for a text whose key changed.
CREATE FUNCTION report_text_shift(m messages, sign integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k record;
    c record;
    x record;
    v record;
    fails integer := (m.status IN ('failed', 'undelivered'))::integer;
BEGIN
    SELECT coalesce(e.sequence_location_id, '') AS sequence_location_id, e.sequence_id
      INTO k FROM enrollments e WHERE e.id = m.enrollment_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT count(*) FILTER (WHERE kind = 'delivered_contact') AS contacts_delivered,
           count(*) FILTER (WHERE kind = 'click') AS unique_clickers,
           count(*) FILTER (WHERE kind = 'replier') AS repliers,
           count(*) FILTER (WHERE kind = 'opt_out') AS opt_outs,
           count(*) FILTER (WHERE kind = 'converter') AS converters
      INTO c FROM report_credits WHERE message_id = m.id;
    SELECT count(*) FILTER (WHERE human) AS human, count(*) FILTER (WHERE NOT human) AS robot
      INTO x FROM link_clicks WHERE message_id = m.id;
    SELECT count(*) AS conversions, coalesce(sum(value_minor), 0)::bigint AS revenue
      INTO v FROM report_conversions WHERE message_id = m.id;
    PERFORM report_add(m.franchisor_id, m.location_id, k.sequence_location_id, k.sequence_id,
                       m.step_index, m.create_time,
                       sent => sign * (m.carrier_message_id IS NOT NULL)::integer,
                       segments => sign * CASE WHEN m.carrier_message_id IS NOT NULL
                                               THEN m.segments ELSE 0 END,
                       delivered => sign * (m.status IN ('delivered', 'read'))::integer,
                       failed => sign * fails,
                       contacts_delivered => sign * c.contacts_delivered,
                       human_clicks => sign * x.human, unique_clickers => sign * c.unique_clickers,
                       robot_clicks => sign * x.robot, repliers => sign * c.repliers,
                       opt_outs => sign * c.opt_outs, conversions => sign * v.conversions,
                       converters => sign * c.converters, revenue_minor => sign * v.revenue);
    IF fails = 1 THEN
        PERFORM report_add_reason(m.franchisor_id, m.location_id, k.sequence_location_id,
                                  k.sequence_id, m.step_index, m.create_time, 'error',
                                  m.error_code, sign);
    END IF;
END $$;

CREATE FUNCTION report_messages() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k record;
    was_text boolean := false;
    is_text boolean := NEW.direction = 'outbound' AND NEW.enrollment_id IS NOT NULL
                       AND NEW.step_index IS NOT NULL;
    o_sent integer := 0;
    o_segments integer := 0;
    o_delivered integer := 0;
    o_failed integer := 0;
    n_sent integer := (NEW.carrier_message_id IS NOT NULL)::integer;
    n_segments integer := CASE WHEN NEW.carrier_message_id IS NOT NULL THEN NEW.segments ELSE 0 END;
    n_delivered integer := (NEW.status IN ('delivered', 'read'))::integer;
    n_failed integer := (NEW.status IN ('failed', 'undelivered'))::integer;
    first_delivered integer := 0;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        was_text := OLD.direction = 'outbound' AND OLD.enrollment_id IS NOT NULL
                    AND OLD.step_index IS NOT NULL;
    END IF;
    IF NOT was_text AND NOT is_text THEN
        RETURN NULL;  -- inbound texts, service texts: not counted
    END IF;
    IF TG_OP = 'UPDATE' AND (was_text <> is_text
           OR OLD.enrollment_id IS DISTINCT FROM NEW.enrollment_id
           OR OLD.step_index IS DISTINCT FROM NEW.step_index
           OR OLD.create_time IS DISTINCT FROM NEW.create_time
           OR OLD.franchisor_id IS DISTINCT FROM NEW.franchisor_id
           OR OLD.location_id IS DISTINCT FROM NEW.location_id) THEN
        -- the product never moves a text; whoever does moves all it counted
        IF was_text THEN
            PERFORM report_text_shift(OLD, -1);
        END IF;
        IF is_text THEN
            IF n_delivered = 1 THEN
                PERFORM report_credit('delivered_contact', NEW.enrollment_id, NEW.id);
            END IF;
            PERFORM report_text_shift(NEW, 1);
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        o_sent := (OLD.carrier_message_id IS NOT NULL)::integer;
        o_segments := CASE WHEN OLD.carrier_message_id IS NOT NULL THEN OLD.segments ELSE 0 END;
        o_delivered := (OLD.status IN ('delivered', 'read'))::integer;
        o_failed := (OLD.status IN ('failed', 'undelivered'))::integer;
        IF o_sent = n_sent AND o_segments = n_segments AND o_delivered = n_delivered
           AND o_failed = n_failed AND (n_failed = 0 OR OLD.error_code = NEW.error_code) THEN
            RETURN NULL;  -- a repeated status, a status time, a body: nothing to count
        END IF;
    END IF;
    SELECT coalesce(e.sequence_location_id, '') AS sequence_location_id, e.sequence_id
      INTO k FROM enrollments e WHERE e.id = NEW.enrollment_id;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF n_delivered > o_delivered
       AND report_credit('delivered_contact', NEW.enrollment_id, NEW.id) THEN
        first_delivered := 1;
    END IF;
    IF n_sent <> o_sent OR n_segments <> o_segments OR n_delivered <> o_delivered
       OR n_failed <> o_failed OR first_delivered <> 0 THEN
        PERFORM report_add(NEW.franchisor_id, NEW.location_id, k.sequence_location_id,
                           k.sequence_id, NEW.step_index, NEW.create_time,
                           sent => n_sent - o_sent, segments => n_segments - o_segments,
                           delivered => n_delivered - o_delivered,
                           failed => n_failed - o_failed,
                           contacts_delivered => first_delivered);
    END IF;
    IF o_failed = 1 AND (n_failed = 0 OR OLD.error_code <> NEW.error_code) THEN
        PERFORM report_add_reason(NEW.franchisor_id, NEW.location_id, k.sequence_location_id,
                                  k.sequence_id, NEW.step_index, NEW.create_time, 'error',
                                  OLD.error_code, -1);
    END IF;
    IF n_failed = 1 AND (o_failed = 0 OR OLD.error_code <> NEW.error_code) THEN
        PERFORM report_add_reason(NEW.franchisor_id, NEW.location_id, k.sequence_location_id,
                                  k.sequence_id, NEW.step_index, NEW.create_time, 'error',
                                  NEW.error_code, 1);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER messages_report AFTER INSERT OR UPDATE ON messages
    FOR EACH ROW EXECUTE FUNCTION report_messages();

-- ---------------------------------------------------------------------------------------------
-- Clicks: a click without its text gets the newest outbound text of its (enrollment, step);
-- human clicks and robot fetches are counted apart; a text's first human click is its unique
-- clicker.

CREATE FUNCTION report_link_clicks_text() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.message_id IS NULL THEN
        SELECT m.id INTO NEW.message_id
          FROM messages m
         WHERE m.enrollment_id = NEW.enrollment_id AND m.step_index = NEW.step_index
           AND m.direction = 'outbound'
         ORDER BY m.create_time DESC, m.id DESC LIMIT 1;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER link_clicks_text BEFORE INSERT ON link_clicks
    FOR EACH ROW EXECUTE FUNCTION report_link_clicks_text();

CREATE FUNCTION report_link_clicks() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    k record;
BEGIN
    IF NEW.message_id IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO k FROM report_text_key(NEW.message_id);
    IF k.franchisor_id IS NULL THEN
        RETURN NULL;
    END IF;
    IF NEW.human THEN
        PERFORM report_add(k.franchisor_id, k.location_id, k.sequence_location_id, k.sequence_id,
                           k.step_index, k.create_time, human_clicks => 1,
                           unique_clickers => report_credit('click', NEW.message_id::text,
                                                            NEW.message_id)::integer);
    ELSE
        PERFORM report_add(k.franchisor_id, k.location_id, k.sequence_location_id, k.sequence_id,
                           k.step_index, k.create_time, robot_clicks => 1);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER link_clicks_report AFTER INSERT ON link_clicks
    FOR EACH ROW EXECUTE FUNCTION report_link_clicks();

-- ---------------------------------------------------------------------------------------------
-- Replies: an inbound text classified 'reply' with a contact (routing fills these in after the
-- insert) is credited to the contact's latest sequence text at that location that the carrier
-- accepted, created at or before the reply and no more than the brand's reply window before it;
-- repliers are contacts (reply rate = repliers / contacts delivered): an enrollment counts once,
-- at the text its first counted reply is credited to ('replier', enrollment id).

CREATE FUNCTION report_replies() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    credited bigint;
    k record;
BEGIN
    IF NEW.classification <> 'reply' OR NEW.contact_id IS NULL OR NEW.franchisor_id IS NULL
       OR NEW.location_id IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND OLD.classification = 'reply'
       AND OLD.contact_id IS NOT DISTINCT FROM NEW.contact_id
       AND OLD.location_id IS NOT DISTINCT FROM NEW.location_id THEN
        RETURN NULL;  -- already credited (or nothing was there to credit)
    END IF;
    SELECT m.id INTO credited
      FROM messages m
      JOIN franchisors f ON f.id = NEW.franchisor_id
     WHERE m.franchisor_id = NEW.franchisor_id AND m.location_id = NEW.location_id
       AND m.contact_id = NEW.contact_id AND m.direction = 'outbound'
       AND m.enrollment_id IS NOT NULL AND m.step_index IS NOT NULL
       AND m.carrier_message_id IS NOT NULL
       AND m.create_time <= NEW.received_at AND m.create_time >= NEW.received_at - f.reply_window
     ORDER BY m.create_time DESC, m.id DESC LIMIT 1;
    IF credited IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO k FROM report_text_key(credited);
    IF k.franchisor_id IS NOT NULL AND report_credit('replier', k.enrollment_id, credited) THEN
        PERFORM report_add(k.franchisor_id, k.location_id, k.sequence_location_id, k.sequence_id,
                           k.step_index, k.create_time, repliers => 1);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER inbound_messages_report AFTER INSERT OR UPDATE OF classification, contact_id
    ON inbound_messages FOR EACH ROW EXECUTE FUNCTION report_replies();

-- ---------------------------------------------------------------------------------------------
-- Opt-outs: a revocation (not a brand-wide copy at another location) is credited to the
-- contact's latest sequence text the carrier accepted at or before it (no window); a text
-- counts one opt-out however many revocations follow it (a STOP and a carrier's 21610 for the
-- same person are one opt-out).

CREATE FUNCTION report_opt_outs() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    credited bigint;
    k record;
BEGIN
    IF NEW.kind <> 'revoke' OR NEW.source LIKE 'brand opt-out #%' THEN
        RETURN NULL;
    END IF;
    SELECT m.id INTO credited
      FROM messages m
     WHERE m.franchisor_id = NEW.franchisor_id AND m.location_id = NEW.location_id
       AND m.contact_id = NEW.contact_id AND m.direction = 'outbound'
       AND m.enrollment_id IS NOT NULL AND m.step_index IS NOT NULL
       AND m.carrier_message_id IS NOT NULL AND m.create_time <= NEW.occurred_at
     ORDER BY m.create_time DESC, m.id DESC LIMIT 1;
    IF credited IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT * INTO k FROM report_text_key(credited);
    IF k.franchisor_id IS NOT NULL AND report_credit('opt_out', credited::text, credited) THEN
        PERFORM report_add(k.franchisor_id, k.location_id, k.sequence_location_id, k.sequence_id,
                           k.step_index, k.create_time, opt_outs => 1);
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER consent_events_report AFTER INSERT ON consent_events
    FOR EACH ROW EXECUTE FUNCTION report_opt_outs();

-- ---------------------------------------------------------------------------------------------
-- Conversions: every purchase gets a report_conversions row (one per activity, an order id once
-- per location). Last touch, windows inclusive at both ends: the text of the contact's latest human
-- click within the click window; else the contact's latest text delivered within the delivery
-- window; else (the order carries a coupon code) the contact's latest sent text with that code,
-- else the location's (any contact), any time before the purchase; else none (nothing counted).

CREATE FUNCTION report_purchases() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    f record;
    credited bigint;
    basis text := 'none';
    won integer;
    k record;
BEGIN
    IF NEW.kind <> 'purchase' THEN
        RETURN NULL;
    END IF;
    SELECT click_window, delivery_window INTO f FROM franchisors WHERE id = NEW.franchisor_id;
    SELECT c.message_id INTO credited
      FROM link_clicks c
      JOIN messages m ON m.id = c.message_id
      JOIN enrollments e ON e.id = m.enrollment_id
     WHERE c.franchisor_id = NEW.franchisor_id AND c.location_id = NEW.location_id
       AND c.contact_id = NEW.contact_id AND c.human
       AND c.clicked_at <= NEW.occurred_at AND c.clicked_at >= NEW.occurred_at - f.click_window
       AND m.direction = 'outbound' AND m.step_index IS NOT NULL
     ORDER BY c.clicked_at DESC, c.id DESC LIMIT 1;
    IF credited IS NOT NULL THEN
        basis := 'click';
    ELSE
        SELECT m.id INTO credited
          FROM messages m
          JOIN enrollments e ON e.id = m.enrollment_id
         WHERE m.franchisor_id = NEW.franchisor_id AND m.location_id = NEW.location_id
           AND m.contact_id = NEW.contact_id AND m.direction = 'outbound'
           AND m.step_index IS NOT NULL
           AND m.delivered_at <= NEW.occurred_at
           AND m.delivered_at >= NEW.occurred_at - f.delivery_window
         ORDER BY m.delivered_at DESC, m.id DESC LIMIT 1;
        IF credited IS NOT NULL THEN
            basis := 'delivery';
        END IF;
    END IF;
    IF credited IS NULL AND NEW.coupon_code <> '' THEN
        SELECT m.id INTO credited
          FROM messages m
          JOIN enrollments e ON e.id = m.enrollment_id
         WHERE m.franchisor_id = NEW.franchisor_id AND m.location_id = NEW.location_id
           AND m.contact_id = NEW.contact_id AND m.direction = 'outbound'
           AND m.step_index IS NOT NULL AND m.carrier_message_id IS NOT NULL
           AND m.coupon_code <> '' AND lower(m.coupon_code) = lower(NEW.coupon_code)
           AND m.create_time <= NEW.occurred_at
         ORDER BY m.create_time DESC, m.id DESC LIMIT 1;
        IF credited IS NULL THEN
            SELECT m.id INTO credited
              FROM messages m
              JOIN enrollments e ON e.id = m.enrollment_id
             WHERE m.franchisor_id = NEW.franchisor_id AND m.location_id = NEW.location_id
               AND m.coupon_code <> '' AND lower(m.coupon_code) = lower(NEW.coupon_code)
               AND m.enrollment_id IS NOT NULL AND m.direction = 'outbound'
               AND m.step_index IS NOT NULL AND m.carrier_message_id IS NOT NULL
               AND m.create_time <= NEW.occurred_at
             ORDER BY lower(m.coupon_code), m.create_time DESC, m.id DESC LIMIT 1;
        END IF;
        IF credited IS NOT NULL THEN
            basis := 'coupon';
        END IF;
    END IF;
    INSERT INTO report_conversions (activity_id, franchisor_id, location_id, contact_id,
                                    order_id, message_id, basis, value_minor, currency_code,
                                    occurred_at)
    VALUES (NEW.id, NEW.franchisor_id, NEW.location_id, NEW.contact_id, NEW.order_id, credited,
            basis, coalesce(NEW.value_minor, 0), coalesce(NEW.currency_code, ''),
            NEW.occurred_at)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS won = ROW_COUNT;
    IF won = 0 OR credited IS NULL THEN
        RETURN NULL;  -- the order was converted before, or no text earned it
    END IF;
    SELECT * INTO k FROM report_text_key(credited);
    PERFORM report_add(k.franchisor_id, k.location_id, k.sequence_location_id, k.sequence_id,
                       k.step_index, k.create_time, conversions => 1,
                       revenue_minor => coalesce(NEW.value_minor, 0),
                       converters => report_credit('converter', k.enrollment_id,
                                                   credited)::integer);
    RETURN NULL;
END $$;
CREATE TRIGGER activities_report AFTER INSERT ON activities
    FOR EACH ROW EXECUTE FUNCTION report_purchases();

-- ---------------------------------------------------------------------------------------------
-- The recount: every rollup row of a brand from the facts alone (enrollments, sequence texts,
-- link clicks, report_credits, report_conversions), never from the counters. Facts are first
-- laid out as (location, sequence, step, instant, measure, amount), then summed per day of
-- each zone. `p_location` (NULL: every location) and `p_zone` ('L', 'B'; NULL: both) narrow it
-- to the rows a changed zone moves (the functions are inlined: the filters reach the indexes).

CREATE FUNCTION report_recount_facts(p_franchisor text, p_location text DEFAULT NULL)
RETURNS TABLE (location_id text, sequence_location_id text, sequence_id text,
               step_index integer, at timestamptz, measure text, reason text, amount bigint)
LANGUAGE sql STABLE AS $$
    WITH texts AS (
        SELECT m.id, m.location_id, coalesce(e.sequence_location_id, '') AS sl, e.sequence_id,
               m.step_index, m.create_time, m.carrier_message_id IS NOT NULL AS sent,
               m.segments, m.status, m.error_code
          FROM messages m JOIN enrollments e ON e.id = m.enrollment_id
         WHERE m.franchisor_id = p_franchisor AND m.direction = 'outbound'
           AND m.step_index IS NOT NULL
           AND (p_location IS NULL OR m.location_id = p_location)
    )
    SELECT e.location_id, coalesce(e.sequence_location_id, ''), e.sequence_id, 0,
           e.enrolled_at, 'enrolled', NULL, 1
      FROM enrollments e
     WHERE e.franchisor_id = p_franchisor
       AND (p_location IS NULL OR e.location_id = p_location)
       AND NOT report_enrollment_never_started(e.status, e.exit_reason)
    UNION ALL
    SELECT e.location_id, coalesce(e.sequence_location_id, ''), e.sequence_id, e.current_step,
           coalesce(e.ended_at, e.update_time), 'exited',
           report_enrollment_exit_reason(e.status, e.exit_reason), 1
      FROM enrollments e
     WHERE e.franchisor_id = p_franchisor
       AND (p_location IS NULL OR e.location_id = p_location)
       AND report_enrollment_exit_reason(e.status, e.exit_reason) IS NOT NULL
    UNION ALL
    SELECT t.location_id, t.sl, t.sequence_id, t.step_index, t.create_time, x.measure, x.reason,
           x.amount
      FROM texts t
     CROSS JOIN LATERAL (VALUES
        ('sent', NULL, t.sent::integer::bigint),
        ('segments', NULL, CASE WHEN t.sent THEN t.segments ELSE 0 END::bigint),
        ('delivered', NULL, (t.status IN ('delivered', 'read'))::integer::bigint),
        ('failed', CASE WHEN t.status IN ('failed', 'undelivered') THEN t.error_code END,
         (t.status IN ('failed', 'undelivered'))::integer::bigint)
     ) x (measure, reason, amount)
     WHERE x.amount <> 0
    UNION ALL
    SELECT t.location_id, t.sl, t.sequence_id, t.step_index, t.create_time,
           CASE c.kind WHEN 'delivered_contact' THEN 'contacts_delivered'
                       WHEN 'click' THEN 'unique_clickers' WHEN 'replier' THEN 'repliers'
                       WHEN 'opt_out' THEN 'opt_outs' WHEN 'converter' THEN 'converters' END,
           NULL, 1
      FROM texts t JOIN report_credits c ON c.message_id = t.id
    UNION ALL
    SELECT t.location_id, t.sl, t.sequence_id, t.step_index, t.create_time,
           CASE WHEN c.human THEN 'human_clicks' ELSE 'robot_clicks' END, NULL, 1
      FROM texts t JOIN link_clicks c ON c.message_id = t.id
    UNION ALL
    SELECT t.location_id, t.sl, t.sequence_id, t.step_index, t.create_time, x.measure, NULL,
           x.amount
      FROM texts t JOIN report_conversions r ON r.message_id = t.id
     CROSS JOIN LATERAL (VALUES ('conversions', 1::bigint), ('revenue_minor', r.value_minor))
        x (measure, amount)
$$;

-- The recounted daily rows of a brand (of one location, one zone), the rows report_days
-- should hold.
CREATE FUNCTION report_recount_days(
    p_franchisor text, p_location text DEFAULT NULL, p_zone char DEFAULT NULL
) RETURNS SETOF report_days LANGUAGE sql STABLE AS $$
    SELECT p_franchisor, z.kind::char(1), (x.at AT TIME ZONE z.tz)::date, x.location_id,
           x.sequence_location_id, x.sequence_id, x.step_index,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'enrolled'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'exited'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'sent'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'segments'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'delivered'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'failed'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'contacts_delivered'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'human_clicks'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'unique_clickers'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'robot_clicks'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'repliers'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'opt_outs'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'conversions'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'converters'), 0)::bigint,
           coalesce(sum(x.amount) FILTER (WHERE x.measure = 'revenue_minor'), 0)::bigint
      FROM report_recount_facts(p_franchisor, p_location) x
      JOIN locations l ON l.franchisor_id = p_franchisor AND l.id = x.location_id
      JOIN franchisors f ON f.id = p_franchisor
     CROSS JOIN LATERAL (VALUES ('L', l.time_zone), ('B', f.reporting_time_zone)) z (kind, tz)
     WHERE p_zone IS NULL OR z.kind = p_zone
     GROUP BY 2, 3, 4, 5, 6, 7
$$;

-- The recounted reason rows of a brand (of one location, one zone).
CREATE FUNCTION report_recount_reasons(
    p_franchisor text, p_location text DEFAULT NULL, p_zone char DEFAULT NULL
) RETURNS SETOF report_day_reasons LANGUAGE sql STABLE AS $$
    SELECT p_franchisor, z.kind::char(1), (x.at AT TIME ZONE z.tz)::date, x.location_id,
           x.sequence_location_id, x.sequence_id, x.step_index,
           CASE x.measure WHEN 'exited' THEN 'exit' ELSE 'error' END, x.reason,
           sum(x.amount)::bigint
      FROM report_recount_facts(p_franchisor, p_location) x
      JOIN locations l ON l.franchisor_id = p_franchisor AND l.id = x.location_id
      JOIN franchisors f ON f.id = p_franchisor
     CROSS JOIN LATERAL (VALUES ('L', l.time_zone), ('B', f.reporting_time_zone)) z (kind, tz)
     WHERE x.measure IN ('exited', 'failed') AND (p_zone IS NULL OR z.kind = p_zone)
     GROUP BY 2, 3, 4, 5, 6, 7, 8, 9
$$;

-- Replaces a brand's rollups (of one location, one zone: see the recount) by the recount,
-- holding off every rollup writer of the brand (the exclusive lock is released at commit): the
-- narrower the rebuild, the shorter the writers wait.
CREATE FUNCTION report_rebuild(
    p_franchisor text, p_location text DEFAULT NULL, p_zone char DEFAULT NULL
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(report_lock_key(p_franchisor));
    IF p_location IS NULL THEN
        DELETE FROM report_days
         WHERE franchisor_id = p_franchisor AND (p_zone IS NULL OR zone_kind = p_zone);
        DELETE FROM report_day_reasons
         WHERE franchisor_id = p_franchisor AND (p_zone IS NULL OR zone_kind = p_zone);
    ELSE
        DELETE FROM report_days
         WHERE franchisor_id = p_franchisor AND location_id = p_location
           AND (p_zone IS NULL OR zone_kind = p_zone);
        DELETE FROM report_day_reasons
         WHERE franchisor_id = p_franchisor AND location_id = p_location
           AND (p_zone IS NULL OR zone_kind = p_zone);
    END IF;
    INSERT INTO report_days SELECT * FROM report_recount_days(p_franchisor, p_location, p_zone);
    INSERT INTO report_day_reasons
    SELECT * FROM report_recount_reasons(p_franchisor, p_location, p_zone);
END $$;

-- A changed zone moves rows to other days, in the same transaction whatever path changed it:
-- a location's time zone only its own 'L' rows, the brand's reporting time zone only its 'B'
-- rows (the other rows keep their days: they are not rebuilt, and writers wait less).
CREATE FUNCTION report_zone_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'franchisors' THEN
        PERFORM report_rebuild(NEW.id, NULL, 'B');
    ELSE
        PERFORM report_rebuild(NEW.franchisor_id, NEW.id, 'L');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER franchisors_reporting_zone AFTER UPDATE OF reporting_time_zone ON franchisors
    FOR EACH ROW WHEN (OLD.reporting_time_zone IS DISTINCT FROM NEW.reporting_time_zone)
    EXECUTE FUNCTION report_zone_changed();
CREATE TRIGGER locations_time_zone AFTER UPDATE OF time_zone ON locations
    FOR EACH ROW WHEN (OLD.time_zone IS DISTINCT FROM NEW.time_zone)
    EXECUTE FUNCTION report_zone_changed();
