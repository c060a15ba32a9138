package sds

import (
	"context"
	"errors"
	"fmt"
)

// OnceOp is a one-shot operation, as SIA offers them for containers without a daemon.
type OnceOp string

// The one-shot operations.
const (
	// OnceRegister registers every identity with fresh attestation and a new key, then
	// gets its role certificates.
	OnceRegister OnceOp = "register"
	// OnceRotate refreshes every identity over mTLS with the certificate and key in the
	// Files (it never registers), then gets its role certificates.
	OnceRotate OnceOp = "rotate"
	// OnceRoleCert gets the role certificates of every identity with the certificate and
	// key in the Files.
	OnceRoleCert OnceOp = "rolecert"
)

// Once does one operation for every configured identity and returns when it is done,
// with every failure joined. It needs Files for OnceRotate and OnceRoleCert; what it
// obtains goes to the Sink and the Files as in Run.
func (m *Manager) Once(ctx context.Context, op OnceOp) error {
	switch op {
	case OnceRegister, OnceRotate, OnceRoleCert:
	default:
		return fmt.Errorf("unknown operation %q", op)
	}
	if op != OnceRegister && m.files == nil {
		return fmt.Errorf("%s needs the credential files of a previous registration; no files directory is configured", op)
	}
	var errs []error
	for _, name := range m.Identities() {
		if err := m.once(ctx, m.state(name), op); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) once(ctx context.Context, st *identityState, op OnceOp) error {
	switch op {
	case OnceRegister:
		if err := m.register(ctx, st); err != nil {
			return err
		}
	case OnceRotate, OnceRoleCert:
		if err := m.reuseFiles(st); err != nil {
			return fmt.Errorf("%s: the credential files in %s cannot be used (%w); run 'register' first", st.name, m.files.Dir(), err)
		}
		if op == OnceRotate {
			if err := m.refresh(ctx, st, st.current()); err != nil {
				return err
			}
		}
	}
	var errs []error
	for _, r := range st.roles {
		if err := m.obtainRole(ctx, st, r, st.current()); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
