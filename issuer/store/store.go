// Package store keeps the issuer's durable state: a record per issued certificate (for refresh
// checks and revocation), the single-use marks of register tokens and join tokens, and the
// operator-created join tokens themselves.
//
// Two backends share one schema, one implementation and one conformance suite (package
// storetest): SQLite (pure Go, a file in the issuer's data directory, the default; one issuer
// process) and PostgreSQL (selected by a DSN; any number of issuer replicas). Every check that
// must hold across replicas — one use per token, one current certificate per instance, refresh
// only from the current certificate, no issuance after revocation — is decided by the database
// inside one transaction (unique constraints, INSERT ... ON CONFLICT, row locks), never by a
// read followed by a separate write in Go.
//
// Times are stored as Unix microseconds in UTC; they come back in UTC with microsecond
// precision.
package store

import (
	"context"
	"errors"
	"time"
)

// Store is the issuer's durable state. Implementations are safe for concurrent use by many
// goroutines and, for PostgreSQL, by many processes sharing one database.
type Store interface {
	// PutCertificate records an issued certificate. It is also the issuer's atomic gate for
	// issuance: the issuer must call it, and succeed, before it hands a certificate out.
	//
	// For a certificate with an instance ID, it fails with ErrRevoked when that instance was
	// revoked. For a service certificate with an instance ID it also makes the certificate the
	// instance's current one; when PreviousSerial is set (a refresh) that happens only if
	// PreviousSerial is still the instance's current serial, otherwise it fails with
	// ErrSerialMismatch (or ErrNotFound when the instance has no current certificate), so of
	// two racing refreshes from the same certificate exactly one succeeds. A serial recorded
	// before fails with ErrExists. Invalid records fail with ErrInvalid.
	PutCertificate(ctx context.Context, c Certificate) error

	// CurrentCertificate returns the current service certificate of an instance: the one the
	// instance must present to refresh. It fails with ErrNotFound when there is none and with
	// ErrRevoked when the instance was revoked; in that case the returned record (possibly
	// zero, if the instance never had a certificate) carries RevokedAt and RevocationReason so
	// the caller can log them.
	CurrentCertificate(ctx context.Context, provider, domain, service, instanceID string) (Certificate, error)

	// CertificateBySerial returns the record of a certificate by its serial number (hex, see
	// NormalizeSerial), or ErrNotFound.
	CertificateBySerial(ctx context.Context, serial string) (Certificate, error)

	// Revoke marks an instance revoked at the given time, with a reason for the audit trail,
	// together with every certificate recorded for it. From then on the instance cannot
	// refresh and PutCertificate refuses new certificates for it. Revoke is idempotent: a
	// second call keeps the first time and reason. Revoking an instance the store has never
	// seen is allowed and blocks it in advance.
	Revoke(ctx context.Context, provider, domain, service, instanceID, reason string, at time.Time) error

	// IsRevoked reports whether the certificate with this serial was revoked. A serial the
	// store does not know (never issued here, or pruned after it expired) is not revoked.
	IsRevoked(ctx context.Context, serial string) (bool, error)

	// UseOnce marks a single-use credential as used. kind names the credential family (see
	// UseRegisterToken and UseJoinToken) and id identifies it within that family (a register
	// token's jti, a join token's hash in hex). It fails with ErrAlreadyUsed when the same
	// (kind, id) was marked before, even by another replica: a unique constraint decides. The
	// mark is kept until Prune runs after expires, which should be the credential's own
	// expiry: after that the credential is refused for being expired anyway.
	UseOnce(ctx context.Context, kind, id string, expires time.Time) error

	// CreateJoinToken stores a new join token. Only the SHA-256 of its secret is stored. It
	// fails with ErrExists when a token with the same hash exists and with ErrInvalid when the
	// hash is not 32 bytes or the domain, service or expiry is missing.
	CreateJoinToken(ctx context.Context, t JoinToken) error

	// BurnJoinToken atomically consumes the join token whose secret hashes to idHash and
	// returns it. Of any number of concurrent burns of one token, across replicas, exactly one
	// succeeds. Later burns fail with ErrAlreadyUsed; an unknown hash fails with ErrNotFound,
	// an expired token with ErrExpired (and stays unused).
	BurnJoinToken(ctx context.Context, idHash []byte) (JoinToken, error)

	// Prune deletes what is no longer needed at time now: single-use marks and join tokens
	// past their expiry, certificate records that expired longer ago than the certificate
	// retention, and instances left with no certificate records (revoked instances only after
	// the revocation retention). It deletes in small batches so that issuance is not blocked
	// for long, and reports how much it deleted.
	Prune(ctx context.Context, now time.Time) (Pruned, error)

	// Close releases the store's connections. The store must not be used afterwards.
	Close() error
}

// CertKind says what a certificate identifies.
type CertKind string

const (
	// KindService is a service identity certificate (CN domain.service), issued to an
	// instance at registration and refresh.
	KindService CertKind = "service"
	// KindRole is a role certificate (CN domain:role.name).
	KindRole CertKind = "role"
)

// Credential families for UseOnce.
const (
	// UseRegisterToken is the UseOnce kind of ZTS instance register tokens (id: the jti).
	UseRegisterToken = "register_token"
	// UseJoinToken is the UseOnce kind of join tokens (id: the hex SHA-256 of the secret).
	UseJoinToken = "join_token"
)

// Certificate is the record of one issued certificate.
type Certificate struct {
	// Serial is the certificate's serial number in lower-case hex without leading zeros (see
	// NormalizeSerial; other spellings are normalized on the way in). Required.
	Serial string
	// Kind is KindService or KindRole. Required.
	Kind CertKind
	// Provider is the attestation provider (an Athenz service name such as
	// sys.auth.k8s); empty when the certificate was not issued through a provider (n-token
	// refresh, role certificates of a principal without an instance).
	Provider string
	// Domain and Service name the identity (domain.service). Required.
	Domain, Service string
	// InstanceID is the instance the certificate was issued to. When set, the certificate
	// takes part in the instance's refresh and revocation checks; when empty, it does not.
	InstanceID string
	// RoleName is the role of a role certificate, as "domain:role.name"; empty for service
	// certificates.
	RoleName string
	// KeyType describes the public key, such as "ECDSA-P256" or "RSA-2048".
	KeyType string
	// Hostname is the hostname the instance asked for, if any.
	Hostname string
	// ClientIP is the address the request came from.
	ClientIP string
	// PreviousSerial is, for a refresh, the serial of the certificate the instance presented;
	// empty at registration. See Store.PutCertificate.
	PreviousSerial string
	// NotBefore and NotAfter are the certificate's validity. Required.
	NotBefore, NotAfter time.Time
	// IssuedAt is when the issuer signed the certificate. Zero means the store's clock at
	// PutCertificate.
	IssuedAt time.Time
	// RevokedAt is when the certificate's instance was revoked; zero when it was not. Set by
	// Revoke; ignored by PutCertificate.
	RevokedAt time.Time
	// RevocationReason is the reason given to Revoke; ignored by PutCertificate.
	RevocationReason string
}

// JoinToken is an operator-created, one-time credential that lets a workload register as
// Domain.Service. Only the SHA-256 of its secret is ever stored.
type JoinToken struct {
	// IDHash is the SHA-256 of the token's secret (32 bytes). Required.
	IDHash []byte
	// Domain and Service name the identity the token may register. Required.
	Domain, Service string
	// ExpiresAt is when the token stops working. Required.
	ExpiresAt time.Time
	// CreatedBy says who created the token, for the audit trail.
	CreatedBy string
	// CreatedAt is when the token was created. Zero means the store's clock at
	// CreateJoinToken.
	CreatedAt time.Time
	// UsedAt is when the token was burned; zero while it is unused. Ignored by
	// CreateJoinToken.
	UsedAt time.Time
}

// Pruned counts the rows one Prune call deleted.
type Pruned struct {
	// SingleUse counts expired UseOnce marks.
	SingleUse int64
	// JoinTokens counts expired join tokens, used or not.
	JoinTokens int64
	// Certificates counts certificate records past the retention.
	Certificates int64
	// Instances counts instances left without certificate records.
	Instances int64
}

// Errors callers branch on. Store methods wrap them with context; test with errors.Is.
var (
	// ErrNotFound means the record, instance or token does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists means a record with the same key (serial, join token hash) exists.
	ErrExists = errors.New("already exists")
	// ErrAlreadyUsed means a single-use credential was used before.
	ErrAlreadyUsed = errors.New("already used")
	// ErrExpired means a credential is past its expiry.
	ErrExpired = errors.New("expired")
	// ErrRevoked means the instance was revoked.
	ErrRevoked = errors.New("revoked")
	// ErrSerialMismatch means a refresh presented a certificate that is not the instance's
	// current one (an old certificate, or one that another refresh has just replaced).
	ErrSerialMismatch = errors.New("presented certificate is not the instance's current certificate")
	// ErrInvalid means the caller passed a record or argument the store cannot accept.
	ErrInvalid = errors.New("invalid argument")
	// ErrSchemaTooNew means the database was migrated by a newer athenz-mesh than this one:
	// this binary does not know its schema and refuses to use it.
	ErrSchemaTooNew = errors.New("database schema is newer than this binary")
)
