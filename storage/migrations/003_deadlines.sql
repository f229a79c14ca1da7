-- Deadlines, reminders and escalations, the two-stage playbook, and duty rosters.

-- The stage an assignment belongs to: 'phone' (the officer phones the resident) or 'visit'
-- (a grid worker goes to the door). Grid workers carded so far were sent to the door.
ALTER TABLE assignments ADD COLUMN stage TEXT NOT NULL DEFAULT 'phone';
UPDATE assignments SET stage = 'visit' WHERE role_label = '网格员';

-- One row per thing that must happen by a time: sign for it, contact the resident, report the outcome.
CREATE TABLE deadlines (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    instruction_id INTEGER NOT NULL REFERENCES instructions(id),
    stage          TEXT NOT NULL CHECK (stage IN ('phone', 'visit')),
    milestone      TEXT NOT NULL CHECK (milestone IN ('ack', 'contact', 'report')),
    due_at         REAL NOT NULL,
    -- open; met (done, perhaps late); superseded (the visit stage took over); moot (resolved without it)
    state          TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'met', 'superseded', 'moot')),
    settled_at     REAL,
    settled_by     TEXT,
    UNIQUE (instruction_id, stage, milestone)
);
CREATE INDEX deadlines_open ON deadlines(due_at) WHERE state = 'open';

-- The timed actions of each deadline: step 0 reminds before it, steps 1.. climb the ladder after it.
-- A timer leaves 'pending' exactly once, in the transaction that queues its messages.
CREATE TABLE timers (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    deadline_id    INTEGER NOT NULL REFERENCES deadlines(id),
    instruction_id INTEGER NOT NULL REFERENCES instructions(id),
    step           INTEGER NOT NULL,
    notify         TEXT NOT NULL,       -- remind | assignee | duty_officer | station_leader | center
    fire_at        REAL NOT NULL,
    -- fired; cancelled (the deadline was settled first); folded (an earlier deadline of the same
    -- stage was still open and its own ladder was already climbing)
    state          TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'fired', 'cancelled', 'folded')),
    fired_at       REAL,
    UNIQUE (deadline_id, step)
);
CREATE INDEX timers_due ON timers(fire_at) WHERE state = 'pending';
CREATE INDEX timers_instruction ON timers(instruction_id);

-- Duty rosters (值班表), imported from the stations' CSV files.
CREATE TABLE duty_shifts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    station_code TEXT NOT NULL,
    duty_date    TEXT NOT NULL,          -- YYYY-MM-DD as listed in the roster
    shift        TEXT NOT NULL,          -- 白班, 夜班, 全天 … as the station names it
    starts_at    REAL NOT NULL,
    ends_at      REAL NOT NULL,
    officer      TEXT NOT NULL,          -- userid of the officer on duty
    leader       TEXT,                   -- userid of the leader in charge (带班领导)
    imported_at  REAL NOT NULL
);
CREATE INDEX duty_shifts_station ON duty_shifts(station_code, starts_at);

-- Each gap in a station's roster is reported to its leader once.
CREATE TABLE roster_gap_warnings (
    gap_key     TEXT PRIMARY KEY,
    warned_at   REAL NOT NULL
);
