-- Sign-for and outcome tracking: who is assigned, what they reported, and the callbacks WeCom sent.

ALTER TABLE instructions ADD COLUMN acked_at REAL;
ALTER TABLE instructions ADD COLUMN acked_by TEXT;
ALTER TABLE instructions ADD COLUMN contact_method TEXT;     -- 电话 | 见面 | 上门 | 视频
ALTER TABLE instructions ADD COLUMN outcome TEXT;            -- 劝阻成功 | 已被骗 | 无法联系 | 拒绝配合 | 误报
ALTER TABLE instructions ADD COLUMN loss_avoided REAL;       -- 挽损, yuan
ALTER TABLE instructions ADD COLUMN amount_lost REAL;        -- 被骗金额, yuan
ALTER TABLE instructions ADD COLUMN outcome_note TEXT;
ALTER TABLE instructions ADD COLUMN reported_at REAL;
ALTER TABLE instructions ADD COLUMN reported_by TEXT;
ALTER TABLE instructions ADD COLUMN closed_at REAL;
ALTER TABLE instructions ADD COLUMN closed_by TEXT;

-- Who must act on an instruction. A re-assignment deactivates the old row and adds a new one.
CREATE TABLE assignments (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    instruction_id INTEGER NOT NULL REFERENCES instructions(id),
    userid         TEXT NOT NULL,
    role_label     TEXT NOT NULL,
    assigned_at    REAL NOT NULL,
    acked_at       REAL,
    active         INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX assignments_user ON assignments(userid, active);
CREATE INDEX assignments_instruction ON assignments(instruction_id);

-- Every WeCom callback, stored before it is acted on. dedupe_key makes WeCom's retries harmless.
CREATE TABLE callbacks (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key   TEXT NOT NULL UNIQUE,
    received_at  REAL NOT NULL,
    from_user    TEXT NOT NULL,
    kind         TEXT NOT NULL,        -- text | template_card_event | other event name
    plaintext    TEXT NOT NULL,        -- the decrypted XML
    processed_at REAL,
    outcome      TEXT
);
CREATE INDEX callbacks_unprocessed ON callbacks(processed_at) WHERE processed_at IS NULL;
