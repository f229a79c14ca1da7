-- Awareness campaigns (issue 5): residents' groups, campaigns, their runs and per-group delivery log.

-- The outbox learns a fourth channel, 客户群群发 (externalcontact/add_msg_template). SQLite cannot
-- change a CHECK constraint in place, so the table is rebuilt with the same columns and indexes.
CREATE TABLE outbox_new (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    instruction_id   INTEGER REFERENCES instructions(id),
    purpose          TEXT NOT NULL,     -- station_notice | assignee_card | fallback_notice | failure_notice | awareness
    channel          TEXT NOT NULL CHECK (channel IN ('app', 'appchat', 'webhook', 'customer_group')),
    address          TEXT NOT NULL,     -- userid(s), chatid, webhook key, or the sending staff member (customer_group)
    label            TEXT NOT NULL,
    rate_keys        TEXT NOT NULL,
    body             TEXT NOT NULL,
    task_id          TEXT,
    priority         INTEGER NOT NULL,
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
INSERT INTO outbox_new (id, instruction_id, purpose, channel, address, label, rate_keys, body, task_id, priority,
                        state, attempts, next_attempt_at, last_attempt_at, created_at, sent_at, msgid, response_code,
                        last_error)
SELECT id, instruction_id, purpose, channel, address, label, rate_keys, body, task_id, priority, state, attempts,
       next_attempt_at, last_attempt_at, created_at, sent_at, msgid, response_code, last_error
FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_new RENAME TO outbox;
CREATE INDEX outbox_due ON outbox(state, priority, next_attempt_at) WHERE state IN ('pending', 'sending');
CREATE INDEX outbox_instruction ON outbox(instruction_id);
CREATE INDEX outbox_recent ON outbox(last_attempt_at) WHERE last_attempt_at IS NOT NULL;

-- Police–resident groups (警民群) from the directory file's [[resident_groups]], replaced at each start.
CREATE TABLE resident_groups (
    code         TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    station_code TEXT NOT NULL,
    channel      TEXT NOT NULL CHECK (channel IN ('customer_group', 'webhook', 'app')),
    address      TEXT NOT NULL,
    community    TEXT NOT NULL DEFAULT '',
    tags         TEXT NOT NULL DEFAULT '[]',
    owner        TEXT,
    members      TEXT NOT NULL DEFAULT '[]'
);

-- Campaigns: those of the config file (source 'config') and those created or changed through the
-- API (source 'api'), which take precedence over the config file's definition of the same name.
CREATE TABLE awareness_campaigns (
    name        TEXT PRIMARY KEY,
    source      TEXT NOT NULL CHECK (source IN ('config', 'api')),
    definition  TEXT NOT NULL,        -- JSON, as bot/awareness/settings.py parse_campaign reads it
    last_slot   REAL,                 -- the latest scheduled time already handled (run or skipped)
    updated_at  REAL NOT NULL
);

-- One run of a campaign: a scheduled slot (unique per campaign, so never run twice) or a run by hand.
CREATE TABLE awareness_runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    campaign    TEXT NOT NULL,
    title       TEXT NOT NULL,
    trigger     TEXT NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    slot        REAL,                 -- the cron time it stands for; NULL for a run by hand
    created_at  REAL NOT NULL,
    definition  TEXT NOT NULL,        -- the campaign as it was when the run was made
    finished_at REAL,                 -- nothing left pending
    failed      INTEGER,              -- groups that did not get it, counted when finished
    UNIQUE (campaign, slot)
);
CREATE INDEX awareness_runs_campaign ON awareness_runs(campaign, id);
CREATE INDEX awareness_runs_open ON awareness_runs(finished_at) WHERE finished_at IS NULL;

-- What each group of a run gets and why; the delivery state comes from the linked outbox row
-- (several customer groups of one staff member share one add_msg_template row) and, for customer
-- groups, from WeCom's send result once the staff member has confirmed the task.
CREATE TABLE awareness_targets (
    run_id        INTEGER NOT NULL REFERENCES awareness_runs(id),
    group_code    TEXT NOT NULL,
    group_name    TEXT NOT NULL,
    station_code  TEXT NOT NULL,
    channel       TEXT NOT NULL,
    address       TEXT NOT NULL,      -- the customer group's chat_id, robot key or userids
    item_id       TEXT NOT NULL,
    fraud_type    TEXT NOT NULL,
    reason        TEXT NOT NULL,      -- why this item was chosen, in Chinese
    outbox_id     INTEGER NOT NULL,   -- outbox(id); no foreign key so the outbox can be rebuilt
    confirm_state TEXT CHECK (confirm_state IN ('awaiting', 'sent', 'failed')),  -- customer groups only
    confirmed_at  REAL,
    confirm_note  TEXT,
    PRIMARY KEY (run_id, group_code)
);
CREATE INDEX awareness_targets_group ON awareness_targets(group_code, item_id);
CREATE INDEX awareness_targets_outbox ON awareness_targets(outbox_id);
CREATE INDEX awareness_targets_awaiting ON awareness_targets(outbox_id) WHERE confirm_state = 'awaiting';
