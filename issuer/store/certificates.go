package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// maxSerialBytes bounds serial numbers. RFC 5280 allows 20 octets; a little slack costs
// nothing and keeps garbage out.
const maxSerialBytes = 32

// NormalizeSerial returns a certificate serial number in the form the store keeps: lower-case
// hex without leading zeros, as (*big.Int).Text(16) writes it. It accepts upper or lower case
// and colon-separated bytes (as openssl prints them), and rejects anything else, zero, and
// serials longer than 32 bytes.
func NormalizeSerial(serial string) (string, error) {
	h := strings.ReplaceAll(strings.TrimSpace(serial), ":", "")
	if h == "" || len(h) > 2*maxSerialBytes+2 {
		return "", fmt.Errorf("%w: serial %q is empty or too long", ErrInvalid, serial)
	}
	n, ok := new(big.Int).SetString(h, 16)
	if !ok || n.Sign() <= 0 || n.BitLen() > 8*maxSerialBytes {
		return "", fmt.Errorf("%w: serial %q is not a positive hex number of at most %d bytes", ErrInvalid, serial, maxSerialBytes)
	}
	return n.Text(16), nil
}

// SerialString formats a certificate's serial number the way the store keeps it.
func SerialString(n *big.Int) string { return n.Text(16) }

// normalize checks c and returns it with its serials normalized, its times in UTC and
// IssuedAt defaulted to now.
func (c Certificate) normalize(now time.Time) (Certificate, error) {
	var errs []error
	var err error
	if c.Serial, err = NormalizeSerial(c.Serial); err != nil {
		errs = append(errs, err)
	}
	if c.PreviousSerial != "" {
		if c.PreviousSerial, err = NormalizeSerial(c.PreviousSerial); err != nil {
			errs = append(errs, fmt.Errorf("previous %w", err))
		}
	}
	switch c.Kind {
	case KindService:
		if c.RoleName != "" {
			errs = append(errs, errors.New("a service certificate has no role name"))
		}
	case KindRole:
		if c.RoleName == "" {
			errs = append(errs, errors.New("a role certificate needs a role name"))
		}
	default:
		errs = append(errs, fmt.Errorf("kind %q is neither %q nor %q", c.Kind, KindService, KindRole))
	}
	if c.Domain == "" || c.Service == "" {
		errs = append(errs, errors.New("domain and service are required"))
	}
	if c.NotBefore.IsZero() || c.NotAfter.IsZero() || !c.NotAfter.After(c.NotBefore) {
		errs = append(errs, errors.New("not-before and not-after are required, not-after after not-before"))
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("certificate record: %w: %w", ErrInvalid, errors.Join(errs...))
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = now
	}
	c.NotBefore, c.NotAfter, c.IssuedAt = c.NotBefore.UTC(), c.NotAfter.UTC(), c.IssuedAt.UTC()
	c.RevokedAt, c.RevocationReason = time.Time{}, ""
	return c, nil
}

const (
	// swapCurrentSQL is the refresh check and the swap in one statement. It creates the
	// instance row if needed and makes $5 its current serial when the instance is not
	// revoked and either $6 (the presented serial) is empty (a registration) or it is the
	// current serial. It returns the row as it is afterwards: the current serial is $5
	// exactly when the swap happened. ON CONFLICT DO UPDATE takes the row lock in PostgreSQL
	// (and SQLite has one writer), so the check and the swap cannot interleave with another
	// replica's, and the lock is held until the certificate record is in.
	swapCurrentSQL = `INSERT INTO instances (provider, domain, service, instance_id, current_serial, updated_at)
VALUES ($1, $2, $3, $4, CASE WHEN $6 = '' THEN $5 END, $7)
ON CONFLICT (provider, domain, service, instance_id) DO UPDATE SET
	current_serial = CASE WHEN instances.revoked_at IS NULL AND ($6 = '' OR instances.current_serial = $6)
		THEN $5 ELSE instances.current_serial END,
	updated_at = excluded.updated_at
RETURNING current_serial, revoked_at`

	// lockInstanceSQL is swapCurrentSQL for role certificates: it only locks the instance
	// row (creating it if needed) and returns whether the instance is revoked.
	lockInstanceSQL = `INSERT INTO instances (provider, domain, service, instance_id, updated_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (provider, domain, service, instance_id) DO UPDATE SET updated_at = excluded.updated_at
RETURNING revoked_at`

	insertCertificateSQL = `INSERT INTO certificates (serial, kind, provider, domain, service,
instance_id, role_name, key_type, hostname, client_ip, previous_serial, not_before, not_after, issued_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT (serial) DO NOTHING`

	certificateColumns = `c.serial, c.kind, c.provider, c.domain, c.service, c.instance_id,
c.role_name, c.key_type, c.hostname, c.client_ip, c.previous_serial, c.not_before, c.not_after,
c.issued_at, c.revoked_at, c.revocation_reason`

	certificateBySerialSQL = `SELECT ` + certificateColumns + ` FROM certificates c WHERE c.serial = $1`

	currentInstanceSQL = `SELECT current_serial, revoked_at, revocation_reason FROM instances
WHERE provider = $1 AND domain = $2 AND service = $3 AND instance_id = $4`

	isRevokedSQL = `SELECT revoked_at FROM certificates WHERE serial = $1`

	// revokeInstanceSQL marks the instance (creating its row if needed) and returns the
	// first revocation's time and reason. Like lockInstanceSQL, it locks the row, so a
	// PutCertificate for the instance either committed before (and its record is marked by
	// revokeCertificatesSQL) or runs after and sees the revocation.
	revokeInstanceSQL = `INSERT INTO instances (provider, domain, service, instance_id, updated_at, revoked_at, revocation_reason)
VALUES ($1, $2, $3, $4, $5, $5, $6)
ON CONFLICT (provider, domain, service, instance_id) DO UPDATE SET
	updated_at = excluded.updated_at,
	revoked_at = COALESCE(instances.revoked_at, excluded.revoked_at),
	revocation_reason = COALESCE(instances.revocation_reason, excluded.revocation_reason)
RETURNING revoked_at, revocation_reason`

	revokeCertificatesSQL = `UPDATE certificates SET revoked_at = $5, revocation_reason = $6
WHERE provider = $1 AND domain = $2 AND service = $3 AND instance_id = $4 AND revoked_at IS NULL`
)

// PutCertificate implements Store.
func (s *sqlStore) PutCertificate(ctx context.Context, c Certificate) error {
	now := s.now()
	c, err := c.normalize(now)
	if err != nil {
		return err
	}
	err = s.wr.write(ctx, false, func(ctx context.Context, q querier) error { return putCertificate(ctx, q, c, now) })
	if err != nil {
		return fmt.Errorf("put certificate %s for %s.%s instance %q: %w", c.Serial, c.Domain, c.Service, c.InstanceID, err)
	}
	return nil
}

// putCertificate records c (already normalized) inside a write transaction. now becomes the
// instance's updated_at, which Prune relies on (see prune.go).
func putCertificate(ctx context.Context, tx querier, c Certificate, now time.Time) error {
	switch {
	case c.InstanceID == "":
	case c.Kind == KindService:
		// A refresh that inserted the row (an unknown instance) leaves its current serial
		// NULL, so that case does not swap either.
		var current sql.NullString
		var revokedAt sql.NullInt64
		err := tx.QueryRowContext(ctx, swapCurrentSQL, c.Provider, c.Domain, c.Service, c.InstanceID,
			c.Serial, c.PreviousSerial, micros(now)).Scan(&current, &revokedAt)
		switch {
		case err != nil:
			return fmt.Errorf("swap current certificate: %w", err)
		case current.Valid && current.String == c.Serial:
			// Swapped.
		case revokedAt.Valid:
			return fmt.Errorf("instance revoked at %s: %w", fromMicros(revokedAt.Int64).Format(time.RFC3339), ErrRevoked)
		case !current.Valid:
			return fmt.Errorf("refresh from %s: instance has no current certificate: %w", c.PreviousSerial, ErrNotFound)
		default:
			return fmt.Errorf("refresh from %s, current is %s: %w", c.PreviousSerial, current.String, ErrSerialMismatch)
		}
	default:
		var revokedAt sql.NullInt64
		err := tx.QueryRowContext(ctx, lockInstanceSQL, c.Provider, c.Domain, c.Service, c.InstanceID,
			micros(now)).Scan(&revokedAt)
		if err != nil {
			return fmt.Errorf("lock instance: %w", err)
		}
		if revokedAt.Valid {
			return fmt.Errorf("instance revoked at %s: %w", fromMicros(revokedAt.Int64).Format(time.RFC3339), ErrRevoked)
		}
	}
	res, err := tx.ExecContext(ctx, insertCertificateSQL, c.Serial, string(c.Kind), c.Provider, c.Domain,
		c.Service, c.InstanceID, c.RoleName, c.KeyType, c.Hostname, c.ClientIP, c.PreviousSerial,
		micros(c.NotBefore), micros(c.NotAfter), micros(c.IssuedAt))
	if err != nil {
		return fmt.Errorf("insert certificate: %w", err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("insert certificate: %w", err)
	} else if n == 0 {
		return fmt.Errorf("serial %s: %w", c.Serial, ErrExists)
	}
	return nil
}

// scanCertificate reads certificateColumns.
func scanCertificate(row interface{ Scan(...any) error }) (Certificate, error) {
	var c Certificate
	var kind string
	var notBefore, notAfter, issuedAt int64
	var revokedAt sql.NullInt64
	var reason sql.NullString
	err := row.Scan(&c.Serial, &kind, &c.Provider, &c.Domain, &c.Service, &c.InstanceID, &c.RoleName,
		&c.KeyType, &c.Hostname, &c.ClientIP, &c.PreviousSerial, &notBefore, &notAfter, &issuedAt,
		&revokedAt, &reason)
	if err != nil {
		return Certificate{}, err
	}
	c.Kind = CertKind(kind)
	c.NotBefore, c.NotAfter, c.IssuedAt = fromMicros(notBefore), fromMicros(notAfter), fromMicros(issuedAt)
	c.RevokedAt, c.RevocationReason = fromNullMicros(revokedAt), reason.String
	return c, nil
}

// CurrentCertificate implements Store.
func (s *sqlStore) CurrentCertificate(ctx context.Context, provider, domain, service, instanceID string) (Certificate, error) {
	what := fmt.Sprintf("current certificate of %s.%s instance %q (provider %q)", domain, service, instanceID, provider)
	var current, reason sql.NullString
	var revokedAt sql.NullInt64
	err := s.read().QueryRowContext(ctx, currentInstanceSQL, provider, domain, service, instanceID).Scan(&current, &revokedAt, &reason)
	if errors.Is(err, sql.ErrNoRows) {
		return Certificate{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	if err != nil {
		return Certificate{}, fmt.Errorf("%s: %w", what, err)
	}
	var c Certificate
	if current.Valid {
		c, err = s.bySerial(ctx, current.String)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return Certificate{}, fmt.Errorf("%s: %w", what, err)
		}
	}
	if revokedAt.Valid {
		c.RevokedAt, c.RevocationReason = fromMicros(revokedAt.Int64), reason.String
		return c, fmt.Errorf("%s: instance revoked at %s: %w", what, c.RevokedAt.Format(time.RFC3339), ErrRevoked)
	}
	if c.Serial == "" {
		return Certificate{}, fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return c, nil
}

// CertificateBySerial implements Store.
func (s *sqlStore) CertificateBySerial(ctx context.Context, serial string) (Certificate, error) {
	norm, err := NormalizeSerial(serial)
	if err != nil {
		return Certificate{}, fmt.Errorf("certificate by serial: %w", err)
	}
	c, err := s.bySerial(ctx, norm)
	if err != nil {
		return Certificate{}, fmt.Errorf("certificate %s: %w", norm, err)
	}
	return c, nil
}

// bySerial reads one record by its normalized serial.
func (s *sqlStore) bySerial(ctx context.Context, serial string) (Certificate, error) {
	c, err := scanCertificate(s.read().QueryRowContext(ctx, certificateBySerialSQL, serial))
	if errors.Is(err, sql.ErrNoRows) {
		return Certificate{}, ErrNotFound
	}
	return c, err
}

// IsRevoked implements Store.
func (s *sqlStore) IsRevoked(ctx context.Context, serial string) (bool, error) {
	norm, err := NormalizeSerial(serial)
	if err != nil {
		return false, fmt.Errorf("is revoked: %w", err)
	}
	var revokedAt sql.NullInt64
	err = s.read().QueryRowContext(ctx, isRevokedSQL, norm).Scan(&revokedAt)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("is revoked %s: %w", norm, err)
	}
	return revokedAt.Valid, nil
}

// Revoke implements Store.
func (s *sqlStore) Revoke(ctx context.Context, provider, domain, service, instanceID, reason string, at time.Time) error {
	if domain == "" || service == "" || instanceID == "" || at.IsZero() {
		return fmt.Errorf("revoke: %w: domain, service, instance id and time are required", ErrInvalid)
	}
	err := s.wr.write(ctx, false, func(ctx context.Context, tx querier) error {
		var revokedAt int64
		var firstReason string
		err := tx.QueryRowContext(ctx, revokeInstanceSQL, provider, domain, service, instanceID, micros(at), reason).
			Scan(&revokedAt, &firstReason)
		if err != nil {
			return fmt.Errorf("mark instance: %w", err)
		}
		if _, err := tx.ExecContext(ctx, revokeCertificatesSQL, provider, domain, service, instanceID, revokedAt, firstReason); err != nil {
			return fmt.Errorf("mark certificates: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("revoke %s.%s instance %q (provider %q): %w", domain, service, instanceID, provider, err)
	}
	return nil
}
