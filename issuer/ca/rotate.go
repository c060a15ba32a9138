package ca

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// A root is rotated in three steps, so that relying parties trust the new root before any
// certificate is issued under it, and keep trusting the old one until every certificate
// issued under it has expired (docs/issuer-ca.md):
//
//  1. Rotate creates the next root (ca.next.key.pem, ca.next.cert.pem, and an
//     intermediate under it when the CA has one) and adds it to roots.pem. The issuer
//     still signs with the current key; distribute roots.pem.
//  2. PromoteRotation, once every relying party has the new bundle, moves the current
//     files to ca.prev.* and the next ones into place. Restart or reload the issuer: it
//     signs under the new root; certificates from the old one still verify.
//  3. FinishRotation, once the old root's last certificate has expired (the issuer's
//     maximum validity after the promotion), drops the old root from roots.pem and
//     deletes the ca.prev.* files.

// Rotation stages reported by RotationStage.
const (
	RotationNone     = ""         // no rotation in progress
	RotationPrepared = "prepared" // Rotate done: the next root is trusted, not yet signing
	RotationPromoted = "promoted" // PromoteRotation done: the old root is still trusted
)

// RotationStage reports how far a root rotation in dir has gone, from which files exist.
func RotationStage(dir string) string {
	switch {
	case exists(filepath.Join(dir, slotFile(RootCertFile, slotNext))):
		return RotationPrepared
	case exists(filepath.Join(dir, slotFile(RootCertFile, slotPrev))):
		return RotationPromoted
	}
	return RotationNone
}

// Rotate prepares a root rotation in a CA directory made by Init (step 1 above): it
// generates the next root as opts says, with an intermediate when opts.Intermediate is
// set or the current CA has one, writes it as ca.next.* (keys 0600, certificates 0644,
// never overwriting), and atomically rewrites roots.pem as the current bundle plus the new
// root. It refuses to start while another rotation is in progress. The current key is
// not read, so an expired or offline root can be rotated.
func Rotate(dir string, opts InitOptions) error {
	if _, err := readRootCert(dir, slotCurrent); err != nil {
		return fmt.Errorf("rotate CA: %w", err)
	}
	switch RotationStage(dir) {
	case RotationPrepared:
		return fmt.Errorf("rotate CA: a rotation is already prepared in %s (%s exists): promote it with --promote, or delete the ca.next.* and intermediate.next.* files to start over", dir, slotFile(RootCertFile, slotNext))
	case RotationPromoted:
		return fmt.Errorf("rotate CA: the previous rotation is not finished (%s exists): run rotate --finish once the old root's certificates have expired", slotFile(RootCertFile, slotPrev))
	}
	for _, base := range layoutFiles {
		if p := filepath.Join(dir, slotFile(base, slotNext)); exists(p) {
			return fmt.Errorf("rotate CA: %s already exists: delete it to start over", p)
		}
	}
	bundle, err := readRootsBundle(dir)
	if err != nil {
		return fmt.Errorf("rotate CA: %w", err)
	}
	intermediate := opts.Intermediate || exists(filepath.Join(dir, IntermediateCertFile))
	files, root, err := generateLayout(opts, intermediate, slotNext)
	if err != nil {
		return fmt.Errorf("rotate CA: %w", err)
	}
	var w newFiles
	for _, base := range orderedNames(files) {
		if err := w.write(filepath.Join(dir, base), files[base], fileMode(base)); err != nil {
			w.rollback()
			return fmt.Errorf("rotate CA: %w", err)
		}
	}
	if err := replaceFile(filepath.Join(dir, RootsBundleFile), encodeCerts(appendCert(bundle, root.cert)), 0o644); err != nil {
		w.rollback()
		return fmt.Errorf("rotate CA: %w", err)
	}
	return nil
}

// PromoteRotation makes the prepared root current (step 2 above). It first loads the next
// CA exactly as the issuer will (key file mode, key matching certificate, chain verifying
// to a root in roots.pem), then moves each current file to its ca.prev.* name and each
// ca.next.* file to its current name. Files are moved with link and unlink, so nothing is
// ever overwritten: if a target exists, it stops with an error naming it. now is the
// clock the next CA is checked with; nil means time.Now.
func PromoteRotation(dir string, now func() time.Time) error {
	if RotationStage(dir) != RotationPrepared {
		return fmt.Errorf("promote CA rotation: nothing prepared in %s (no %s): run rotate first", dir, slotFile(RootCertFile, slotNext))
	}
	next := Config{
		KeyFile:   filepath.Join(dir, slotFile(RootKeyFile, slotNext)),
		CertFile:  filepath.Join(dir, slotFile(RootCertFile, slotNext)),
		RootsFile: filepath.Join(dir, RootsBundleFile),
		Now:       now,
	}
	if exists(filepath.Join(dir, slotFile(IntermediateKeyFile, slotNext))) {
		next.KeyFile = filepath.Join(dir, slotFile(IntermediateKeyFile, slotNext))
		next.CertFile = filepath.Join(dir, slotFile(IntermediateCertFile, slotNext))
	}
	if _, err := Load(next); err != nil {
		return fmt.Errorf("promote CA rotation: the next CA does not load: %w", err)
	}
	bundle, err := readRootsBundle(dir)
	if err != nil {
		return fmt.Errorf("promote CA rotation: %w", err)
	}
	if cur, err := readRootCert(dir, slotCurrent); err == nil && !slices.ContainsFunc(bundle, cur.Equal) {
		return fmt.Errorf("promote CA rotation: %s does not contain the current root, so certificates it issued would stop verifying; add it back first", RootsBundleFile)
	}
	var moves [][2]string
	for _, base := range layoutFiles {
		cur, prev := filepath.Join(dir, base), filepath.Join(dir, slotFile(base, slotPrev))
		if exists(cur) {
			if exists(prev) {
				return fmt.Errorf("promote CA rotation: %s already exists: refusing to overwrite it", prev)
			}
			moves = append(moves, [2]string{cur, prev})
		}
	}
	for _, base := range layoutFiles {
		if nxt := filepath.Join(dir, slotFile(base, slotNext)); exists(nxt) {
			moves = append(moves, [2]string{nxt, filepath.Join(dir, base)})
		}
	}
	for _, m := range moves {
		if err := moveNoClobber(m[0], m[1]); err != nil {
			return fmt.Errorf("promote CA rotation: %w (the files moved so far are in place; finish the moves by hand)", err)
		}
	}
	return nil
}

// FinishRotation ends a promoted rotation (step 3 above): it removes the previous root
// from roots.pem (keeping any other root an operator added) and deletes the ca.prev.*
// files, keys first. Call it only once every certificate issued under the previous root
// has expired: they stop verifying as soon as relying parties take the new bundle.
func FinishRotation(dir string) error {
	if RotationStage(dir) != RotationPromoted {
		return fmt.Errorf("finish CA rotation: no promoted rotation in %s (no %s)", dir, slotFile(RootCertFile, slotPrev))
	}
	old, err := readRootCert(dir, slotPrev)
	if err != nil {
		return fmt.Errorf("finish CA rotation: %w", err)
	}
	cur, err := readRootCert(dir, slotCurrent)
	if err != nil {
		return fmt.Errorf("finish CA rotation: %w", err)
	}
	bundle, err := readRootsBundle(dir)
	if err != nil {
		return fmt.Errorf("finish CA rotation: %w", err)
	}
	bundle = slices.DeleteFunc(bundle, old.Equal)
	bundle = appendCert(bundle, cur)
	if err := replaceFile(filepath.Join(dir, RootsBundleFile), encodeCerts(bundle), 0o644); err != nil {
		return fmt.Errorf("finish CA rotation: %w", err)
	}
	for _, base := range layoutFiles {
		p := filepath.Join(dir, slotFile(base, slotPrev))
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("finish CA rotation: %w", err)
		}
	}
	return nil
}

// readRootCert reads the root certificate of a slot.
func readRootCert(dir, slot string) (*x509.Certificate, error) {
	certs, err := readCertsFile(filepath.Join(dir, slotFile(RootCertFile, slot)))
	if err != nil {
		return nil, err
	}
	return certs[0], nil
}

// readRootsBundle reads roots.pem, or the current root when there is no bundle yet.
func readRootsBundle(dir string) ([]*x509.Certificate, error) {
	path := filepath.Join(dir, RootsBundleFile)
	if !exists(path) {
		root, err := readRootCert(dir, slotCurrent)
		if err != nil {
			return nil, err
		}
		return []*x509.Certificate{root}, nil
	}
	return readCertsFile(path)
}

// encodeCerts PEM-encodes certificates into one bundle.
func encodeCerts(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
