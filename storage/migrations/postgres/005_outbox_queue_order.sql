-- The delivery queue's order is most urgent risk first, then oldest (id), whatever the retry schedule:
-- after an outage the backlog goes out high-risk and oldest first. This index walks that order.
-- PostgreSQL twin of ../005_outbox_queue_order.sql.
CREATE INDEX outbox_queue ON outbox(priority, id) WHERE state = 'pending';
