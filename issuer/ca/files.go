package ca

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/athenz-mesh/athenz-mesh/internal/atomicfile"
)

// The files of a CA directory (Init, Rotate, DirConfig). Keys are written with mode 0600,
// certificates and the roots bundle with 0644.
const (
	// RootKeyFile is the root CA's private key. With an intermediate, the issuer does not
	// need it: it may be kept offline.
	RootKeyFile = "ca.key.pem"
	// RootCertFile is the root CA certificate.
	RootCertFile = "ca.cert.pem"
	// IntermediateKeyFile is the intermediate CA's private key, the signing key when
	// present.
	IntermediateKeyFile = "intermediate.key.pem"
	// IntermediateCertFile is the intermediate CA certificate, signed by the root.
	IntermediateCertFile = "intermediate.cert.pem"
	// RootsBundleFile is the bundle of trusted roots relying parties install: the root,
	// and during a rotation also the next (or previous) root.
	RootsBundleFile = "roots.pem"
)

// Slots of a rotation: the current files, the next root's ("ca.next.key.pem", ...) between
// Rotate and PromoteRotation, the previous root's ("ca.prev.key.pem", ...) between
// PromoteRotation and FinishRotation.
const (
	slotCurrent = ""
	slotNext    = "next"
	slotPrev    = "prev"
)

// slotFile names a layout file in a slot: slotFile("ca.key.pem", "next") is
// "ca.next.key.pem".
func slotFile(base, slot string) string {
	if slot == slotCurrent {
		return base
	}
	stem, rest, _ := strings.Cut(base, ".")
	return stem + "." + slot + "." + rest
}

// layoutFiles are the key and certificate files of one slot, keys first.
var layoutFiles = []string{RootKeyFile, IntermediateKeyFile, RootCertFile, IntermediateCertFile}

// DirConfig returns the Config for a CA directory made by Init: it signs with the
// intermediate when intermediate.key.pem exists, else with the root, and trusts the roots
// in roots.pem. Only the file fields are set.
func DirConfig(dir string) Config {
	cfg := Config{
		KeyFile:   filepath.Join(dir, RootKeyFile),
		CertFile:  filepath.Join(dir, RootCertFile),
		RootsFile: filepath.Join(dir, RootsBundleFile),
	}
	if exists(filepath.Join(dir, IntermediateKeyFile)) {
		cfg.KeyFile = filepath.Join(dir, IntermediateKeyFile)
		cfg.CertFile = filepath.Join(dir, IntermediateCertFile)
	}
	return cfg
}

// exists reports whether path names something (a broken symlink counts).
func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// newFiles writes files that must not exist yet, never overwriting: each is created with
// O_EXCL. On any failure the files it created are removed, so a failed run leaves the
// directory as it found it.
type newFiles struct {
	created []string
}

// write creates path with data and exactly mode perm (chmod after create, so the umask
// cannot widen or narrow it).
func (w *newFiles) write(path string, data []byte, perm fs.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists: refusing to overwrite it", path)
		}
		return err
	}
	w.created = append(w.created, path)
	err = f.Chmod(perm)
	if _, werr := f.Write(data); err == nil {
		err = werr
	}
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// rollback removes the files created so far.
func (w *newFiles) rollback() {
	for _, p := range w.created {
		_ = os.Remove(p)
	}
	w.created = nil
}

// replaceFile atomically replaces a public file (the roots bundle).
func replaceFile(path string, data []byte, perm fs.FileMode) error {
	return atomicfile.Write(path, data, perm)
}

// moveNoClobber renames from to to, failing if to exists. A hard link is made first
// (which fails on an existing target, unlike rename), then the old name removed.
func moveNoClobber(from, to string) error {
	if err := os.Link(from, to); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("move %s: %s already exists: refusing to overwrite it", from, to)
		}
		return fmt.Errorf("move %s to %s: %w", from, to, err)
	}
	if err := os.Remove(from); err != nil {
		return fmt.Errorf("move %s to %s: %w", from, to, err)
	}
	return nil
}
