-- Schema version 1: certificate records, instances, single-use marks and join tokens.
-- Shared by SQLite and PostgreSQL. Times are Unix microseconds (UTC) in BIGINT columns so
-- that both backends store, compare and index them the same way.

-- One row per issued certificate (service or role).
CREATE TABLE certificates (
	serial            TEXT PRIMARY KEY,      -- lower-case hex, no leading zeros
	kind              TEXT NOT NULL,         -- 'service' or 'role'
	provider          TEXT NOT NULL,         -- '' when not issued through a provider
	domain            TEXT NOT NULL,
	service           TEXT NOT NULL,
	instance_id       TEXT NOT NULL,         -- '' when not bound to an instance
	role_name         TEXT NOT NULL,         -- 'domain:role.name' for role certificates, else ''
	key_type          TEXT NOT NULL,
	hostname          TEXT NOT NULL,
	client_ip         TEXT NOT NULL,
	previous_serial   TEXT NOT NULL,         -- the certificate presented at refresh, else ''
	not_before        BIGINT NOT NULL,
	not_after         BIGINT NOT NULL,
	issued_at         BIGINT NOT NULL,
	revoked_at        BIGINT,                -- NULL unless the instance was revoked
	revocation_reason TEXT
);
CREATE INDEX certificates_instance ON certificates (provider, domain, service, instance_id);
CREATE INDEX certificates_not_after ON certificates (not_after);

-- One row per instance: which service certificate is current (refresh must present it) and
-- whether the instance is revoked. The row is the lock that orders issuance, refresh and
-- revocation of one instance.
CREATE TABLE instances (
	provider          TEXT NOT NULL,
	domain            TEXT NOT NULL,
	service           TEXT NOT NULL,
	instance_id       TEXT NOT NULL,
	current_serial    TEXT,                  -- NULL until a service certificate is issued
	updated_at        BIGINT NOT NULL,
	revoked_at        BIGINT,
	revocation_reason TEXT,
	PRIMARY KEY (provider, domain, service, instance_id)
);

-- Single-use credentials (register token jti, join token hash): the primary key makes a
-- second use fail, on any replica.
CREATE TABLE single_use (
	kind       TEXT NOT NULL,
	id         TEXT NOT NULL,
	used_at    BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	PRIMARY KEY (kind, id)
);
CREATE INDEX single_use_expires_at ON single_use (expires_at);

-- Operator-created join tokens. Only the SHA-256 of the secret is stored (hex).
CREATE TABLE join_tokens (
	id_hash    TEXT PRIMARY KEY,
	domain     TEXT NOT NULL,
	service    TEXT NOT NULL,
	created_by TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	used_at    BIGINT                         -- NULL until burned
);
CREATE INDEX join_tokens_expires_at ON join_tokens (expires_at);
