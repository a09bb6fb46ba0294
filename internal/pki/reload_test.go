package pki

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a fresh certificate for id and its key into dir.
func writePair(t *testing.T, ca *CA, dir, id string) (certFile, keyFile string) {
	t.Helper()
	key, _ := NewKey()
	certPEM, err := ca.Issue(id, key.Public(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := EncodeKey(key)
	certFile, keyFile = filepath.Join(dir, "api.pem"), filepath.Join(dir, "api-key.pem")
	if err := writeFileAtomic(keyFile, keyPEM); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(certFile, certPEM); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func servedID(t *testing.T, f *FileCert) string {
	t.Helper()
	c, _ := f.GetCertificate(nil)
	leaf, err := ParseCert(EncodeCert(c.Certificate[0]))
	if err != nil {
		t.Fatal(err)
	}
	return leaf.Subject.CommonName
}

func TestFileCertWatchReloads(t *testing.T) {
	ca, _ := NewCA("test")
	dir := t.TempDir()
	certFile, keyFile := writePair(t, ca, dir, "first")
	f, err := LoadFileCert(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.Watch(ctx, 5*time.Millisecond, func(err error) { results <- err })

	// The new certificate is one byte longer (its name), so the change is
	// seen even where modification times are coarse.
	writePair(t, ca, dir, "second")
	if err := <-results; err != nil {
		t.Fatalf("reload: %v", err)
	}
	if got := servedID(t, f); got != "second" {
		t.Fatalf("serving %q after the files changed, want second", got)
	}
	// A broken file is reported and the last good certificate stays.
	if err := os.WriteFile(certFile, []byte("not a certificate, and longer than before"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := <-results; err == nil {
		t.Fatal("a broken certificate file reloaded without error")
	}
	if got := servedID(t, f); got != "second" {
		t.Fatalf("serving %q after a failed reload, want second", got)
	}
}

func TestLoadFileCertRefusesMissingFiles(t *testing.T) {
	if _, err := LoadFileCert(filepath.Join(t.TempDir(), "none.pem"), "none-key.pem"); err == nil {
		t.Fatal("missing files loaded")
	}
}
