-- Indexes put the domain last (version 7, SQLite). Never edited once applied.
--
-- The same indexes as version 7 on PostgreSQL, where an index leading with the domain could be
-- chosen for any statement of its table before the table had statistics (see that file). SQLite
-- prefers the index that matches the most equalities, so its keys and table constraints, which
-- it cannot change without rebuilding the table, stay as they are.

DROP INDEX tokens_jti;
CREATE INDEX tokens_jti ON tokens (jti, domain);

DROP INDEX sessions_user;
CREATE INDEX sessions_user ON sessions (user_id, domain);
DROP INDEX sessions_sid;
CREATE INDEX sessions_sid ON sessions (sid, domain);

DROP INDEX refresh_families_user;
CREATE INDEX refresh_families_user ON refresh_families (user_id, domain);
DROP INDEX refresh_families_sid;
CREATE INDEX refresh_families_sid ON refresh_families (sid, domain);

DROP INDEX family_jtis_family;
CREATE INDEX family_jtis_family ON family_jtis (family_id, domain);

DROP INDEX session_clients_user;
CREATE INDEX session_clients_user ON session_clients (user_id, client_id, domain);

DROP INDEX device_codes_user_code;
CREATE UNIQUE INDEX device_codes_user_code ON device_codes (user_code_hash, domain);

-- The users declared in configuration, read at start and reload in username order
-- (list_config_users): an index of those users only, which no other statement can use.
DROP INDEX users_source;
CREATE INDEX users_config ON users (domain, username) WHERE source = 'config';
