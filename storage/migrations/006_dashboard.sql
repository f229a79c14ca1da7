-- Bulletins, the dashboard and exports: what stays fast on a year of a big city's history.
--
-- report_facts is one narrow row per instruction, clustered by its Asia/Shanghai day (WITHOUT ROWID,
-- primary key (day, instruction_id)), holding exactly what the bulletins and statistics read. Triggers
-- keep it up to date in the same transaction as every write to instructions, deadlines, assignments
-- and events, so a week of a big city (~80,000 instructions) is one contiguous range read instead of
-- 80,000 scattered lookups into instructions and deadlines.
--
-- day = the Asia/Shanghai calendar day as days since 1970-01-01 (China keeps UTC+8 all year).

CREATE TABLE report_facts (
    day             INTEGER NOT NULL,
    instruction_id  INTEGER NOT NULL,
    received_at     REAL NOT NULL,
    station         TEXT,               -- routed_station; NULL while nobody knows the station
    risk_level      TEXT NOT NULL,
    fraud_type      TEXT NOT NULL,
    state           TEXT NOT NULL,
    acked_at        REAL,               -- first sign-for (instructions.acked_at)
    -- The phone-stage ack deadline met by its due time; the visit stage's where there is no phone
    -- stage, or the phone one was made moot or superseded (the grid worker dealt with it).
    ack_ontime      INTEGER NOT NULL DEFAULT 0,
    contact_at      REAL,               -- the phone contact deadline's settled_at, when met
    visit           INTEGER NOT NULL DEFAULT 0,  -- someone was sent to the door (visit stage / visit_ordered)
    contact_method  TEXT,
    outcome         TEXT,
    loss_avoided    REAL,
    amount_lost     REAL,
    PRIMARY KEY (day, instruction_id)
) WITHOUT ROWID;

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
    loss_avoided   REAL NOT NULL DEFAULT 0,
    amount_lost    REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (day, station, risk_level, outcome)
) WITHOUT ROWID;

CREATE INDEX instructions_received ON instructions(received_at);

-- Bulletins already queued: a restart (or a second scheduler) never sends one twice.
CREATE TABLE bulletin_runs (
    kind          TEXT NOT NULL CHECK (kind IN ('daily', 'weekly')),
    period_start  INTEGER NOT NULL,      -- first Asia/Shanghai day of the period (day number as above)
    created_at    REAL NOT NULL,
    messages      INTEGER NOT NULL,
    summary       TEXT NOT NULL DEFAULT '{}',   -- the headline figures as JSON, for the record
    PRIMARY KEY (kind, period_start)
);

CREATE TRIGGER report_facts_insert AFTER INSERT ON instructions BEGIN
    INSERT INTO report_facts(day, instruction_id, received_at, station, risk_level, fraud_type, state, acked_at,
                             contact_method, outcome, loss_avoided, amount_lost)
    VALUES (CAST((NEW.received_at + 28800) / 86400 AS INTEGER), NEW.id, NEW.received_at, NEW.routed_station,
            NEW.risk_level, NEW.fraud_type, NEW.state, NEW.acked_at, NEW.contact_method, NEW.outcome,
            NEW.loss_avoided, NEW.amount_lost);
END;

CREATE TRIGGER report_facts_update AFTER UPDATE OF state, acked_at, routed_station, contact_method, outcome,
    loss_avoided, amount_lost ON instructions BEGIN
    UPDATE report_facts SET station = NEW.routed_station, state = NEW.state, acked_at = NEW.acked_at,
        contact_method = NEW.contact_method, outcome = NEW.outcome, loss_avoided = NEW.loss_avoided,
        amount_lost = NEW.amount_lost
    WHERE day = CAST((NEW.received_at + 28800) / 86400 AS INTEGER) AND instruction_id = NEW.id;
END;

CREATE TRIGGER report_facts_deadline_insert AFTER INSERT ON deadlines
    WHEN NEW.milestone IN ('ack', 'contact') BEGIN
    UPDATE report_facts SET
        ack_ontime = COALESCE((SELECT d.state = 'met' AND d.settled_at <= d.due_at FROM deadlines d
                               WHERE d.instruction_id = NEW.instruction_id AND d.milestone = 'ack'
                               ORDER BY d.state IN ('moot', 'superseded'), d.stage LIMIT 1), 0),
        contact_at = (SELECT d.settled_at FROM deadlines d WHERE d.instruction_id = NEW.instruction_id
                      AND d.stage = 'phone' AND d.milestone = 'contact' AND d.state = 'met')
    WHERE day = (SELECT CAST((received_at + 28800) / 86400 AS INTEGER) FROM instructions
                 WHERE id = NEW.instruction_id)
      AND instruction_id = NEW.instruction_id;
END;

CREATE TRIGGER report_facts_deadline_update AFTER UPDATE OF state, settled_at ON deadlines
    WHEN NEW.milestone IN ('ack', 'contact') BEGIN
    UPDATE report_facts SET
        ack_ontime = COALESCE((SELECT d.state = 'met' AND d.settled_at <= d.due_at FROM deadlines d
                               WHERE d.instruction_id = NEW.instruction_id AND d.milestone = 'ack'
                               ORDER BY d.state IN ('moot', 'superseded'), d.stage LIMIT 1), 0),
        contact_at = (SELECT d.settled_at FROM deadlines d WHERE d.instruction_id = NEW.instruction_id
                      AND d.stage = 'phone' AND d.milestone = 'contact' AND d.state = 'met')
    WHERE day = (SELECT CAST((received_at + 28800) / 86400 AS INTEGER) FROM instructions
                 WHERE id = NEW.instruction_id)
      AND instruction_id = NEW.instruction_id;
END;

CREATE TRIGGER report_facts_visit_assigned AFTER INSERT ON assignments WHEN NEW.stage = 'visit' BEGIN
    UPDATE report_facts SET visit = 1
    WHERE day = (SELECT CAST((received_at + 28800) / 86400 AS INTEGER) FROM instructions
                 WHERE id = NEW.instruction_id)
      AND instruction_id = NEW.instruction_id;
END;

CREATE TRIGGER report_facts_visit_ordered AFTER INSERT ON events WHEN NEW.action = 'visit_ordered' BEGIN
    UPDATE report_facts SET visit = 1
    WHERE day = (SELECT CAST((received_at + 28800) / 86400 AS INTEGER) FROM instructions
                 WHERE id = NEW.instruction_id)
      AND instruction_id = NEW.instruction_id;
END;

CREATE TRIGGER report_daily_insert AFTER INSERT ON report_facts BEGIN
    INSERT INTO report_daily(day, station, risk_level, outcome, received, signed, ack_ontime, contacted, visits,
                             loss_avoided, amount_lost)
    VALUES (NEW.day, COALESCE(NEW.station, ''), NEW.risk_level, COALESCE(NEW.outcome, ''), 1,
            NEW.acked_at IS NOT NULL, NEW.ack_ontime, NEW.contact_at IS NOT NULL,
            NEW.visit OR COALESCE(NEW.contact_method IN ('见面', '上门'), 0), COALESCE(NEW.loss_avoided, 0),
            COALESCE(NEW.amount_lost, 0))
    ON CONFLICT (day, station, risk_level, outcome) DO UPDATE SET
        received = received + 1, signed = signed + excluded.signed, ack_ontime = ack_ontime + excluded.ack_ontime,
        contacted = contacted + excluded.contacted, visits = visits + excluded.visits,
        loss_avoided = loss_avoided + excluded.loss_avoided, amount_lost = amount_lost + excluded.amount_lost;
END;

CREATE TRIGGER report_daily_update AFTER UPDATE OF station, acked_at, ack_ontime, contact_at, visit, contact_method,
    outcome, loss_avoided, amount_lost ON report_facts
    WHEN OLD.station IS NOT NEW.station OR OLD.acked_at IS NOT NEW.acked_at OR OLD.ack_ontime IS NOT NEW.ack_ontime
      OR OLD.contact_at IS NOT NEW.contact_at OR OLD.visit IS NOT NEW.visit
      OR OLD.contact_method IS NOT NEW.contact_method OR OLD.outcome IS NOT NEW.outcome
      OR OLD.loss_avoided IS NOT NEW.loss_avoided OR OLD.amount_lost IS NOT NEW.amount_lost BEGIN
    UPDATE report_daily SET
        received = received - 1, signed = signed - (OLD.acked_at IS NOT NULL), ack_ontime = ack_ontime - OLD.ack_ontime,
        contacted = contacted - (OLD.contact_at IS NOT NULL),
        visits = visits - (OLD.visit OR COALESCE(OLD.contact_method IN ('见面', '上门'), 0)),
        loss_avoided = loss_avoided - COALESCE(OLD.loss_avoided, 0),
        amount_lost = amount_lost - COALESCE(OLD.amount_lost, 0)
    WHERE day = OLD.day AND station = COALESCE(OLD.station, '') AND risk_level = OLD.risk_level
      AND outcome = COALESCE(OLD.outcome, '');
    INSERT INTO report_daily(day, station, risk_level, outcome, received, signed, ack_ontime, contacted, visits,
                             loss_avoided, amount_lost)
    VALUES (NEW.day, COALESCE(NEW.station, ''), NEW.risk_level, COALESCE(NEW.outcome, ''), 1,
            NEW.acked_at IS NOT NULL, NEW.ack_ontime, NEW.contact_at IS NOT NULL,
            NEW.visit OR COALESCE(NEW.contact_method IN ('见面', '上门'), 0), COALESCE(NEW.loss_avoided, 0),
            COALESCE(NEW.amount_lost, 0))
    ON CONFLICT (day, station, risk_level, outcome) DO UPDATE SET
        received = received + 1, signed = signed + excluded.signed, ack_ontime = ack_ontime + excluded.ack_ontime,
        contacted = contacted + excluded.contacted, visits = visits + excluded.visits,
        loss_avoided = loss_avoided + excluded.loss_avoided, amount_lost = amount_lost + excluded.amount_lost;
END;

-- The history so far.
INSERT INTO report_facts(day, instruction_id, received_at, station, risk_level, fraud_type, state, acked_at,
                         ack_ontime, contact_at, visit, contact_method, outcome, loss_avoided, amount_lost)
SELECT CAST((i.received_at + 28800) / 86400 AS INTEGER), i.id, i.received_at, i.routed_station, i.risk_level,
       i.fraud_type, i.state, i.acked_at,
       COALESCE((SELECT d.state = 'met' AND d.settled_at <= d.due_at FROM deadlines d
                 WHERE d.instruction_id = i.id AND d.milestone = 'ack'
                 ORDER BY d.state IN ('moot', 'superseded'), d.stage LIMIT 1), 0),
       (SELECT d.settled_at FROM deadlines d WHERE d.instruction_id = i.id AND d.stage = 'phone'
        AND d.milestone = 'contact' AND d.state = 'met'),
       EXISTS (SELECT 1 FROM assignments a WHERE a.instruction_id = i.id AND a.stage = 'visit')
           OR EXISTS (SELECT 1 FROM events e WHERE e.instruction_id = i.id AND e.action = 'visit_ordered'),
       i.contact_method, i.outcome, i.loss_avoided, i.amount_lost
FROM instructions i;
