-- Several instances on one database (PostgreSQL; SQLite keeps the same schema with one process):
-- who is alive, who holds the lease on the scheduled work, which instance claimed an outbox row.

ALTER TABLE outbox ADD COLUMN claimed_by TEXT;   -- instances.instance of the sender while 'sending', and after

CREATE TABLE instances (
    instance      TEXT PRIMARY KEY,      -- host-pid-random, new at every start
    host          TEXT NOT NULL,
    started_at    DOUBLE PRECISION NOT NULL,
    heartbeat_at  DOUBLE PRECISION NOT NULL          -- wall clock; a row not refreshed for [cluster] dead_after is dead
);

-- One row per lease ('scheduler': deadline sweeps, escalations, campaigns, bulletins).
CREATE TABLE leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  DOUBLE PRECISION NOT NULL
);
