-- Core pipeline: directory, instructions, their audit trail, and the outbox of WeCom messages.
-- Times are epoch seconds (REAL, UTC); the display layer converts them to Asia/Shanghai.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE stations (
    code         TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    group_code   TEXT,
    leader       TEXT,
    duty_officer TEXT
);

CREATE TABLE grids (
    code         TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    station_code TEXT NOT NULL REFERENCES stations(code)
);

CREATE TABLE people (
    userid       TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('grid_worker', 'officer', 'station_leader', 'center')),
    station_code TEXT REFERENCES stations(code),
    grid_code    TEXT REFERENCES grids(code),
    mobile       TEXT
);

CREATE TABLE chat_groups (
    code        TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('appchat', 'webhook')),
    address     TEXT NOT NULL,          -- appchat chatid or robot webhook key
    members     TEXT NOT NULL DEFAULT '[]'
);

CREATE TABLE instructions (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,   -- the short number people type
    instruction_no    TEXT NOT NULL UNIQUE,                -- the center's number: idempotency key
    issued_at         REAL NOT NULL,
    received_at       REAL NOT NULL,
    warning_type      TEXT NOT NULL,
    fraud_type        TEXT NOT NULL,
    risk_level        TEXT NOT NULL CHECK (risk_level IN ('high', 'medium', 'low')),
    target_name       TEXT NOT NULL,
    target_phone      TEXT NOT NULL,
    target_id_number  TEXT,
    target_address    TEXT,
    target_age        INTEGER,
    station_code      TEXT NOT NULL,       -- as the center sent it
    grid_code         TEXT,
    routed_station    TEXT,                -- NULL when the station is unknown to the directory
    routed_grid       TEXT,                -- NULL when the grid is unknown or absent
    needs_assignment  INTEGER NOT NULL DEFAULT 0,
    summary           TEXT NOT NULL DEFAULT '',
    amount_at_risk    REAL,
    state             TEXT NOT NULL,
    delivery_failed   INTEGER NOT NULL DEFAULT 0,
    raw               TEXT NOT NULL        -- the accepted JSON, as a trace of what the center sent
);
CREATE INDEX instructions_state ON instructions(state, received_at);
CREATE INDEX instructions_station ON instructions(routed_station, received_at);

CREATE TABLE events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    instruction_id INTEGER NOT NULL REFERENCES instructions(id),
    at             REAL NOT NULL,
    actor          TEXT NOT NULL,       -- userid, 'center' (API) or 'system'
    channel        TEXT NOT NULL,       -- api | card | command | timer | outbox
    action         TEXT NOT NULL,
    from_state     TEXT,
    to_state       TEXT,
    detail         TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_instruction ON events(instruction_id, id);

CREATE TABLE outbox (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    instruction_id   INTEGER REFERENCES instructions(id),
    purpose          TEXT NOT NULL,     -- station_notice | assignee_card | fallback_notice | failure_notice
    channel          TEXT NOT NULL CHECK (channel IN ('app', 'appchat', 'webhook')),
    address          TEXT NOT NULL,     -- userid, chatid or webhook key
    label            TEXT NOT NULL,     -- what people and logs see (userid or group code, never a webhook key)
    rate_keys        TEXT NOT NULL,     -- JSON list of WeCom limit buckets this message counts against
    body             TEXT NOT NULL,     -- the exact request JSON; re-sent byte for byte
    task_id          TEXT,
    priority         INTEGER NOT NULL,  -- 0 = most urgent
    state            TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'sent', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    last_attempt_at  REAL,
    created_at       REAL NOT NULL,
    sent_at          REAL,
    msgid            TEXT,
    response_code    TEXT,
    last_error       TEXT
);
CREATE INDEX outbox_due ON outbox(state, priority, next_attempt_at) WHERE state IN ('pending', 'sending');
CREATE INDEX outbox_instruction ON outbox(instruction_id);
CREATE INDEX outbox_recent ON outbox(last_attempt_at) WHERE last_attempt_at IS NOT NULL;
