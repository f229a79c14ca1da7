-- Dashboard sessions, recorded server-side: the signed cookie carries a random session id, and this
-- table holds its SHA-256 (never the id itself) until logout deletes it or it expires. A request reads
-- one row by primary key; logins delete the expired rows through the expiry index.
CREATE TABLE dashboard_sessions (
    token_hash  TEXT PRIMARY KEY,    -- hex SHA-256 of the session id in the cookie
    userid      TEXT NOT NULL,       -- a directory userid, or admin:<admin_user> for the local account
    created_at  REAL NOT NULL,
    expires_at  REAL NOT NULL
);

CREATE INDEX dashboard_sessions_user ON dashboard_sessions(userid);
CREATE INDEX dashboard_sessions_expiry ON dashboard_sessions(expires_at);

-- The signing key lived in meta before; it now comes from the config or a file outside the database.
DELETE FROM meta WHERE key = 'dashboard_session_secret';
