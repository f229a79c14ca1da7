-- Bulletins, the dashboard and exports: what stays fast on a year of a big city's history.
-- PostgreSQL twin of ../006_dashboard.sql; read that file for the why.
--
-- report_facts is one narrow row per instruction, keyed by its Asia/Shanghai day; report_daily sums it
-- per day, station, risk level and outcome. Both are kept by triggers in the same transaction as every
-- write to instructions, deadlines, assignments and events, with exactly the effect of SQLite's triggers:
--   day = floor((received_at + 28800) / 86400), the Asia/Shanghai day as days since 1970-01-01 (SQLite
--     truncates, the same for any time after 1970; a plain ::integer cast would round instead);
--   SQLite's 0/1 booleans are spelled out as ::integer, and its WHEN clauses are WHEN (...) here;
--   ORDER BY stage uses the "C" collation, SQLite's BINARY.
-- The trigger functions carry the search_path they were created under, so they find these tables
-- whatever the search_path of the session that writes.

CREATE TABLE report_facts (
    day             INTEGER NOT NULL,
    instruction_id  BIGINT NOT NULL,
    received_at     DOUBLE PRECISION NOT NULL,
    station         TEXT,               -- routed_station; NULL while nobody knows the station
    risk_level      TEXT NOT NULL,
    fraud_type      TEXT NOT NULL,
    state           TEXT NOT NULL,
    acked_at        DOUBLE PRECISION,   -- first sign-for (instructions.acked_at)
    -- The phone-stage ack deadline met by its due time; the visit stage's where there is no phone
    -- stage, or the phone one was made moot or superseded (the grid worker dealt with it).
    ack_ontime      INTEGER NOT NULL DEFAULT 0,
    contact_at      DOUBLE PRECISION,   -- the phone contact deadline's settled_at, when met
    visit           INTEGER NOT NULL DEFAULT 0,  -- someone was sent to the door (visit stage / visit_ordered)
    contact_method  TEXT,
    outcome         TEXT,
    loss_avoided    DOUBLE PRECISION,
    amount_lost     DOUBLE PRECISION,
    PRIMARY KEY (day, instruction_id)
);

-- The same, summed per day, station, risk level and outcome ('' for none), kept by triggers on
-- report_facts: a week of the whole city is at most 7 × stations × 3 × 6 rows, however busy it was.
CREATE TABLE report_daily (
    day            INTEGER NOT NULL,
    station        TEXT NOT NULL,
    risk_level     TEXT NOT NULL,
    outcome        TEXT NOT NULL,
    received       INTEGER NOT NULL DEFAULT 0,
    signed         INTEGER NOT NULL DEFAULT 0,
    ack_ontime     INTEGER NOT NULL DEFAULT 0,
    contacted      INTEGER NOT NULL DEFAULT 0,
    visits         INTEGER NOT NULL DEFAULT 0,
    loss_avoided   DOUBLE PRECISION NOT NULL DEFAULT 0,
    amount_lost    DOUBLE PRECISION NOT NULL DEFAULT 0,
    PRIMARY KEY (day, station, risk_level, outcome)
);

CREATE INDEX instructions_received ON instructions(received_at);

-- Bulletins already queued: a restart (or a second scheduler) never sends one twice.
CREATE TABLE bulletin_runs (
    kind          TEXT NOT NULL CHECK (kind IN ('daily', 'weekly')),
    period_start  INTEGER NOT NULL,      -- first Asia/Shanghai day of the period (day number as above)
    created_at    DOUBLE PRECISION NOT NULL,
    messages      INTEGER NOT NULL,
    summary       TEXT NOT NULL DEFAULT '{}',   -- the headline figures as JSON, for the record
    PRIMARY KEY (kind, period_start)
);

CREATE FUNCTION report_facts_insert() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO report_facts(day, instruction_id, received_at, station, risk_level, fraud_type, state, acked_at,
                             contact_method, outcome, loss_avoided, amount_lost)
    VALUES (floor((NEW.received_at + 28800) / 86400)::integer, NEW.id, NEW.received_at, NEW.routed_station,
            NEW.risk_level, NEW.fraud_type, NEW.state, NEW.acked_at, NEW.contact_method, NEW.outcome,
            NEW.loss_avoided, NEW.amount_lost);
    RETURN NULL;
END;
$$;

CREATE TRIGGER report_facts_insert AFTER INSERT ON instructions
    FOR EACH ROW EXECUTE FUNCTION report_facts_insert();

CREATE FUNCTION report_facts_update() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE report_facts SET station = NEW.routed_station, state = NEW.state, acked_at = NEW.acked_at,
        contact_method = NEW.contact_method, outcome = NEW.outcome, loss_avoided = NEW.loss_avoided,
        amount_lost = NEW.amount_lost
    WHERE day = floor((NEW.received_at + 28800) / 86400)::integer AND instruction_id = NEW.id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER report_facts_update AFTER UPDATE OF state, acked_at, routed_station, contact_method, outcome,
    loss_avoided, amount_lost ON instructions
    FOR EACH ROW EXECUTE FUNCTION report_facts_update();

-- SQLite has two triggers with this same body, one on INSERT and one on UPDATE OF state, settled_at.
CREATE FUNCTION report_facts_deadline() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE report_facts SET
        ack_ontime = COALESCE((SELECT (d.state = 'met' AND d.settled_at <= d.due_at)::integer FROM deadlines d
                               WHERE d.instruction_id = NEW.instruction_id AND d.milestone = 'ack'
                               ORDER BY d.state IN ('moot', 'superseded'), d.stage COLLATE "C" LIMIT 1), 0),
        contact_at = (SELECT d.settled_at FROM deadlines d WHERE d.instruction_id = NEW.instruction_id
                      AND d.stage = 'phone' AND d.milestone = 'contact' AND d.state = 'met')
    WHERE day = (SELECT floor((i.received_at + 28800) / 86400)::integer FROM instructions i
                 WHERE i.id = NEW.instruction_id)
      AND instruction_id = NEW.instruction_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER report_facts_deadline_insert AFTER INSERT ON deadlines
    FOR EACH ROW WHEN (NEW.milestone IN ('ack', 'contact')) EXECUTE FUNCTION report_facts_deadline();

CREATE TRIGGER report_facts_deadline_update AFTER UPDATE OF state, settled_at ON deadlines
    FOR EACH ROW WHEN (NEW.milestone IN ('ack', 'contact')) EXECUTE FUNCTION report_facts_deadline();

-- SQLite's report_facts_visit_assigned and report_facts_visit_ordered share this body.
CREATE FUNCTION report_facts_visit() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE report_facts SET visit = 1
    WHERE day = (SELECT floor((i.received_at + 28800) / 86400)::integer FROM instructions i
                 WHERE i.id = NEW.instruction_id)
      AND instruction_id = NEW.instruction_id;
    RETURN NULL;
END;
$$;

CREATE TRIGGER report_facts_visit_assigned AFTER INSERT ON assignments
    FOR EACH ROW WHEN (NEW.stage = 'visit') EXECUTE FUNCTION report_facts_visit();

CREATE TRIGGER report_facts_visit_ordered AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.action = 'visit_ordered') EXECUTE FUNCTION report_facts_visit();

-- report_daily_insert adds the new fact; report_daily_update first takes the old one away (the row it
-- counted in keeps existing, at zero if it was the last) and then adds the new one.
CREATE FUNCTION report_daily_apply() RETURNS trigger LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        UPDATE report_daily SET
            received = received - 1, signed = signed - (OLD.acked_at IS NOT NULL)::integer,
            ack_ontime = ack_ontime - OLD.ack_ontime, contacted = contacted - (OLD.contact_at IS NOT NULL)::integer,
            visits = visits - (OLD.visit <> 0 OR COALESCE(OLD.contact_method IN ('见面', '上门'), false))::integer,
            loss_avoided = loss_avoided - COALESCE(OLD.loss_avoided, 0),
            amount_lost = amount_lost - COALESCE(OLD.amount_lost, 0)
        WHERE day = OLD.day AND station = COALESCE(OLD.station, '') AND risk_level = OLD.risk_level
          AND outcome = COALESCE(OLD.outcome, '');
    END IF;
    INSERT INTO report_daily AS r(day, station, risk_level, outcome, received, signed, ack_ontime, contacted, visits,
                                  loss_avoided, amount_lost)
    VALUES (NEW.day, COALESCE(NEW.station, ''), NEW.risk_level, COALESCE(NEW.outcome, ''), 1,
            (NEW.acked_at IS NOT NULL)::integer, NEW.ack_ontime, (NEW.contact_at IS NOT NULL)::integer,
            (NEW.visit <> 0 OR COALESCE(NEW.contact_method IN ('见面', '上门'), false))::integer,
            COALESCE(NEW.loss_avoided, 0), COALESCE(NEW.amount_lost, 0))
    ON CONFLICT (day, station, risk_level, outcome) DO UPDATE SET
        received = r.received + 1, signed = r.signed + excluded.signed, ack_ontime = r.ack_ontime + excluded.ack_ontime,
        contacted = r.contacted + excluded.contacted, visits = r.visits + excluded.visits,
        loss_avoided = r.loss_avoided + excluded.loss_avoided, amount_lost = r.amount_lost + excluded.amount_lost;
    RETURN NULL;
END;
$$;

CREATE TRIGGER report_daily_insert AFTER INSERT ON report_facts
    FOR EACH ROW EXECUTE FUNCTION report_daily_apply();

CREATE TRIGGER report_daily_update AFTER UPDATE OF station, acked_at, ack_ontime, contact_at, visit, contact_method,
    outcome, loss_avoided, amount_lost ON report_facts
    FOR EACH ROW
    WHEN (OLD.station IS DISTINCT FROM NEW.station OR OLD.acked_at IS DISTINCT FROM NEW.acked_at
          OR OLD.ack_ontime IS DISTINCT FROM NEW.ack_ontime OR OLD.contact_at IS DISTINCT FROM NEW.contact_at
          OR OLD.visit IS DISTINCT FROM NEW.visit OR OLD.contact_method IS DISTINCT FROM NEW.contact_method
          OR OLD.outcome IS DISTINCT FROM NEW.outcome OR OLD.loss_avoided IS DISTINCT FROM NEW.loss_avoided
          OR OLD.amount_lost IS DISTINCT FROM NEW.amount_lost)
    EXECUTE FUNCTION report_daily_apply();

-- The history so far (in id order, as SQLite walks it, so report_daily's sums add up in the same order).
INSERT INTO report_facts(day, instruction_id, received_at, station, risk_level, fraud_type, state, acked_at,
                         ack_ontime, contact_at, visit, contact_method, outcome, loss_avoided, amount_lost)
SELECT floor((i.received_at + 28800) / 86400)::integer, i.id, i.received_at, i.routed_station, i.risk_level,
       i.fraud_type, i.state, i.acked_at,
       COALESCE((SELECT (d.state = 'met' AND d.settled_at <= d.due_at)::integer FROM deadlines d
                 WHERE d.instruction_id = i.id AND d.milestone = 'ack'
                 ORDER BY d.state IN ('moot', 'superseded'), d.stage COLLATE "C" LIMIT 1), 0),
       (SELECT d.settled_at FROM deadlines d WHERE d.instruction_id = i.id AND d.stage = 'phone'
        AND d.milestone = 'contact' AND d.state = 'met'),
       (EXISTS (SELECT 1 FROM assignments a WHERE a.instruction_id = i.id AND a.stage = 'visit')
           OR EXISTS (SELECT 1 FROM events e WHERE e.instruction_id = i.id AND e.action = 'visit_ordered'))::integer,
       i.contact_method, i.outcome, i.loss_avoided, i.amount_lost
FROM instructions i
ORDER BY i.id;
