-- The configuration revision the store was last reconciled from (version 11, PostgreSQL). Never edited
-- once applied.
--
-- One row at most. A replica started or reloaded with a file whose `revision` is lower than this
-- one (or with none, once one was recorded) refuses to reconcile, so an old copy of the file
-- cannot put older clients and users back for every replica (src/reconcile.rs, claim_revision).
CREATE TABLE config_revision (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL,
    applied_at BIGINT NOT NULL
);
