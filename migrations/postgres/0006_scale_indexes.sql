-- Indexes for a store holding millions of sessions and refresh tokens (version 6, PostgreSQL),
-- found with bench/flat.sh and the query plans of every statement. Never edited once applied.

-- Sessions by public id: a refresh or an introspection of a family bound to a session
-- (find_session_by_sid), sign-out (end_session) and the sessions of a client (client_sids).
CREATE INDEX sessions_sid ON sessions (domain, sid);

-- Families bound to a session, revoked when it ends (session_families).
CREATE INDEX refresh_families_sid ON refresh_families (domain, sid);

-- Garbage collection: finished back-channel deliveries, and sign-in failures a day old.
CREATE INDEX logout_deliveries_finished ON logout_deliveries (COALESCE(delivered_at, failed_at));
CREATE INDEX login_attempts_updated_at ON login_attempts (updated_at);

-- The users declared in configuration, reconciled at each start and reload (list_config_users).
CREATE INDEX users_source ON users (domain, source);
