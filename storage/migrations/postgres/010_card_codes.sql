-- Cards that stay true (issue 16). PostgreSQL twin of ../010_card_codes.sql.
--
-- card_codes: the response codes WeCom gives for each interaction card sent to a person — one from the send
-- (the outbox row's response_code, copied here when it is marked sent) and one from each click (the
-- template_card_event's ResponseCode) — each usable once, within 72 hours, by message/update_template_card.
-- A code is spent by the card update that claims it (used_at, outbox_id) in the transaction of the action
-- that caused it; `shows` is the status line that update puts on the card.
CREATE TABLE card_codes (
    code            TEXT PRIMARY KEY,
    task_id         TEXT NOT NULL,     -- the card's task_id (outbox.task_id of its send)
    instruction_id  BIGINT NOT NULL,
    userid          TEXT NOT NULL,     -- whose card: the recipient (send) or who clicked it
    source          TEXT NOT NULL CHECK (source IN ('send', 'click')),
    issued_at       DOUBLE PRECISION NOT NULL,
    used_at         DOUBLE PRECISION,
    outbox_id       BIGINT,            -- the card_update row that spends it
    shows           TEXT               -- the status line that update shows
);
CREATE INDEX card_codes_instruction ON card_codes(instruction_id);

-- Cards sent before this migration keep the code of their send.
INSERT INTO card_codes(code, task_id, instruction_id, userid, source, issued_at)
SELECT response_code, task_id, instruction_id, address, 'send', sent_at FROM outbox
WHERE response_code IS NOT NULL AND task_id IS NOT NULL AND instruction_id IS NOT NULL AND sent_at IS NOT NULL
  AND purpose IN ('assignee_card', 'feedback_card')
ON CONFLICT DO NOTHING;
