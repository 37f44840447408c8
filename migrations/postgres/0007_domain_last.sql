-- Indexes put the domain last (version 7, PostgreSQL). Never edited once applied.
--
-- Every lookup names its domain, and most deployments have one domain, so an index that leads
-- with `domain` matches any statement of its table. Until a table has statistics (a new
-- database, and its first minutes under load) the planner costs all such indexes alike and may
-- cache a generic plan that scans a domain's rows by one of them: the opaque-token lookup used
-- `tokens_jti (domain, jti)` with the token's hash as a filter, 20 to 97 ms a lookup
-- (bench/results/2026-11-25-soak-first-minute-plans.txt). With the domain last, the key a
-- statement names is the only index that fits it; src/store/plans.rs checks each lookup's plan.
-- Tables whose only index leads with the domain (clients, consents, revoked_jtis, ...) keep it.

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
ALTER TABLE family_jtis DROP CONSTRAINT family_jtis_pkey, ADD PRIMARY KEY (jti, domain);

DROP INDEX session_clients_user;
CREATE INDEX session_clients_user ON session_clients (user_id, client_id, domain);
ALTER TABLE session_clients DROP CONSTRAINT session_clients_pkey, ADD PRIMARY KEY (sid, client_id, domain);

DROP INDEX device_codes_user_code;
CREATE UNIQUE INDEX device_codes_user_code ON device_codes (user_code_hash, domain);

-- The users declared in configuration, read at start and reload in username order
-- (list_config_users): an index of those users only, which no other statement can use.
DROP INDEX users_source;
CREATE INDEX users_config ON users (domain, username) WHERE source = 'config';
ALTER TABLE users DROP CONSTRAINT users_domain_username_key;
CREATE UNIQUE INDEX users_username ON users (username, domain);
