package ca

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// loadDir loads the CA of dir at testNow.
func loadDir(t *testing.T, dir string) *CA {
	t.Helper()
	cfg := DirConfig(dir)
	cfg.Now = clockAt(testNow)
	ca, err := Load(cfg)
	if err != nil {
		t.Fatalf("Load(%s): %v", dir, err)
	}
	return ca
}

func TestRotation(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name              string
		init, rotate      InitOptions
		wantIntermediates bool
	}{
		{"root only", InitOptions{}, InitOptions{}, false},
		{"intermediate kept", InitOptions{Intermediate: true}, InitOptions{}, true},
		{"intermediate added, key type changed", InitOptions{}, InitOptions{Intermediate: true, KeyType: KeyTypeP384}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tt.init.Now = clockAt(testNow.AddDate(-1, 0, 0))
			if err := Init(dir, tt.init); err != nil {
				t.Fatal(err)
			}
			oldCA := loadDir(t, dir)
			oldCert, err := oldCA.Issue(leafRequest(t, testKeys().p256[1]))
			if err != nil {
				t.Fatal(err)
			}
			if stage := RotationStage(dir); stage != RotationNone {
				t.Fatalf("stage = %q before rotating", stage)
			}

			// 1. Rotate: the next root is published, the old one still signs.
			tt.rotate.Now = clockAt(testNow)
			tt.rotate.CommonName = "next root"
			if err := Rotate(dir, tt.rotate); err != nil {
				t.Fatalf("Rotate: %v", err)
			}
			if stage := RotationStage(dir); stage != RotationPrepared {
				t.Fatalf("stage = %q after Rotate", stage)
			}
			modes := fileModes(t, dir)
			for _, f := range []string{"ca.next.key.pem", "ca.next.cert.pem"} {
				if want := fileMode(f); modes[f] != want {
					t.Errorf("%s has mode %v, want %v", f, modes[f], want)
				}
			}
			if _, ok := modes["intermediate.next.key.pem"]; ok != tt.wantIntermediates {
				t.Errorf("intermediate.next.key.pem present = %v, want %v", ok, tt.wantIntermediates)
			}
			prepared := loadDir(t, dir)
			if !prepared.Certificate().Equal(oldCA.Certificate()) {
				t.Error("the CA signs with a new key before promotion")
			}
			if got := subjects(prepared.Roots()); len(got) != 2 || got[1] != "CN=next root" {
				t.Errorf("roots after Rotate = %v, want the old and the next root", got)
			}
			if err := Rotate(dir, tt.rotate); err == nil || !strings.Contains(err.Error(), "already prepared") {
				t.Errorf("second Rotate = %v", err)
			}
			if err := FinishRotation(dir); err == nil {
				t.Error("FinishRotation before promotion succeeded")
			}

			// 2. Promote: the new root signs, certificates of both verify.
			if err := PromoteRotation(dir, clockAt(testNow)); err != nil {
				t.Fatalf("PromoteRotation: %v", err)
			}
			if stage := RotationStage(dir); stage != RotationPromoted {
				t.Fatalf("stage = %q after promotion", stage)
			}
			newCA := loadDir(t, dir)
			if newCA.Root().Subject.CommonName != "next root" {
				t.Errorf("after promotion the root is %s", newCA.Root().Subject)
			}
			if got := len(newCA.Chain()) > 0; got != tt.wantIntermediates {
				t.Errorf("signing through an intermediate = %v, want %v", got, tt.wantIntermediates)
			}
			newCert, err := newCA.Issue(leafRequest(t, testKeys().p256[2]))
			if err != nil {
				t.Fatal(err)
			}
			for name, is := range map[string]*Issued{"old": oldCert, "new": newCert} {
				if err := verifyLeaf(newCA, is, testNow, x509.ExtKeyUsageClientAuth); err != nil {
					t.Errorf("%s certificate does not verify with the overlap bundle: %v", name, err)
				}
			}
			if err := Rotate(dir, tt.rotate); err == nil || !strings.Contains(err.Error(), "not finished") {
				t.Errorf("Rotate during the overlap = %v", err)
			}
			if err := PromoteRotation(dir, clockAt(testNow)); err == nil {
				t.Error("second PromoteRotation succeeded")
			}

			// 3. Finish: only the new root is trusted.
			if err := FinishRotation(dir); err != nil {
				t.Fatalf("FinishRotation: %v", err)
			}
			if stage := RotationStage(dir); stage != RotationNone {
				t.Fatalf("stage = %q after finishing", stage)
			}
			for f := range fileModes(t, dir) {
				if strings.Contains(f, ".prev.") || strings.Contains(f, ".next.") {
					t.Errorf("%s left after finishing", f)
				}
			}
			final := loadDir(t, dir)
			if got := subjects(final.Roots()); len(got) != 1 || got[0] != "CN=next root" {
				t.Errorf("roots after finishing = %v", got)
			}
			if err := verifyLeaf(final, newCert, testNow, x509.ExtKeyUsageClientAuth); err != nil {
				t.Errorf("new certificate: %v", err)
			}
			if err := verifyLeaf(final, oldCert, testNow, x509.ExtKeyUsageClientAuth); err == nil {
				t.Error("a certificate of the retired root still verifies")
			}
		})
	}
}

func TestRotationRefusals(t *testing.T) {
	t.Parallel()
	t.Run("no CA", func(t *testing.T) {
		t.Parallel()
		if err := Rotate(t.TempDir(), InitOptions{}); err == nil || !strings.Contains(err.Error(), "ca.cert.pem") {
			t.Errorf("Rotate in an empty directory = %v", err)
		}
	})
	t.Run("promote without rotate", func(t *testing.T) {
		t.Parallel()
		ca := newDirCA(t, InitOptions{}, Config{})
		if err := PromoteRotation(ca.dir, clockAt(testNow)); err == nil || !strings.Contains(err.Error(), "run rotate first") {
			t.Errorf("PromoteRotation = %v", err)
		}
	})
	t.Run("promote refuses a next key with a loose mode", func(t *testing.T) {
		t.Parallel()
		ca := newDirCA(t, InitOptions{}, Config{})
		if err := Rotate(ca.dir, InitOptions{Now: clockAt(testNow)}); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(ca.dir, "ca.next.key.pem"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := PromoteRotation(ca.dir, clockAt(testNow)); err == nil || !strings.Contains(err.Error(), "chmod") {
			t.Errorf("PromoteRotation = %v", err)
		}
		if RotationStage(ca.dir) != RotationPrepared {
			t.Error("a refused promotion moved files")
		}
	})
	t.Run("promote refuses a bundle without the old root", func(t *testing.T) {
		t.Parallel()
		ca := newDirCA(t, InitOptions{}, Config{})
		if err := Rotate(ca.dir, InitOptions{Now: clockAt(testNow)}); err != nil {
			t.Fatal(err)
		}
		next, _ := os.ReadFile(filepath.Join(ca.dir, "ca.next.cert.pem"))
		writeFile(t, ca.dir, RootsBundleFile, next, 0o644)
		if err := PromoteRotation(ca.dir, clockAt(testNow)); err == nil || !strings.Contains(err.Error(), "does not contain the current root") {
			t.Errorf("PromoteRotation = %v", err)
		}
	})
	t.Run("promote never overwrites", func(t *testing.T) {
		t.Parallel()
		ca := newDirCA(t, InitOptions{}, Config{})
		if err := Rotate(ca.dir, InitOptions{Now: clockAt(testNow)}); err != nil {
			t.Fatal(err)
		}
		writeFile(t, ca.dir, "ca.prev.key.pem", []byte("precious"), 0o600)
		if err := PromoteRotation(ca.dir, clockAt(testNow)); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
			t.Errorf("PromoteRotation = %v", err)
		}
		if b, _ := os.ReadFile(filepath.Join(ca.dir, "ca.prev.key.pem")); string(b) != "precious" {
			t.Error("ca.prev.key.pem overwritten")
		}
	})
	t.Run("expired root can be rotated", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := Init(dir, InitOptions{Validity: time.Hour, Now: clockAt(testNow.AddDate(-1, 0, 0))}); err != nil {
			t.Fatal(err)
		}
		if err := Rotate(dir, InitOptions{Now: clockAt(testNow)}); err != nil {
			t.Fatalf("Rotate of an expired root: %v", err)
		}
	})
}

func TestSlotFile(t *testing.T) {
	t.Parallel()
	for in, want := range map[[2]string]string{
		{RootKeyFile, slotCurrent}:         "ca.key.pem",
		{RootKeyFile, slotNext}:            "ca.next.key.pem",
		{IntermediateCertFile, slotPrev}:   "intermediate.prev.cert.pem",
		{IntermediateKeyFile, slotNext}:    "intermediate.next.key.pem",
		{RootCertFile, slotPrev}:           "ca.prev.cert.pem",
		{IntermediateCertFile, slotNext}:   "intermediate.next.cert.pem",
		{IntermediateKeyFile, slotCurrent}: "intermediate.key.pem",
	} {
		if got := slotFile(in[0], in[1]); got != want {
			t.Errorf("slotFile(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
	}
}
