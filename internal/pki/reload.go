package pki

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/sovra/sovra/internal/ticker"
)

// FileCert is a certificate and key kept in PEM files by someone else (the
// operator's PKI, an ACME client): Reload reads them again, Watch does so
// when the files change, so a renewed certificate is served without a
// restart. A failed reload keeps the certificate served so far.
type FileCert struct {
	CertFile, KeyFile string

	cur atomic.Pointer[tls.Certificate]
	// seen sums up the files as the last reload found them.
	seen atomic.Pointer[string]
}

// LoadFileCert reads the files once; an error means nothing can be
// served.
func LoadFileCert(certFile, keyFile string) (*FileCert, error) {
	f := &FileCert{CertFile: certFile, KeyFile: keyFile}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload reads the files again.
func (f *FileCert) Reload() error {
	stamp := f.fileStamp()
	f.seen.Store(&stamp)
	cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		return fmt.Errorf("pki: load %s: %w", f.CertFile, err)
	}
	f.cur.Store(&cert)
	return nil
}

// GetCertificate serves the current certificate (tls.Config hook).
func (f *FileCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.cur.Load(), nil
}

// Leaf is the certificate served now, parsed.
func (f *FileCert) Leaf() *tls.Certificate { return f.cur.Load() }

// Watch reloads the files when their size or modification time changes,
// looking every interval, until ctx ends. onReload learns each attempt's
// result.
func (f *FileCert) Watch(ctx context.Context, interval time.Duration, onReload func(error)) {
	ticker.Every(ctx, interval, func(context.Context) {
		if f.fileStamp() == *f.seen.Load() {
			return
		}
		err := f.Reload()
		if onReload != nil {
			onReload(err)
		}
	})
}

// fileStamp sums up the files' sizes and modification times.
func (f *FileCert) fileStamp() string {
	var s string
	for _, name := range []string{f.CertFile, f.KeyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			s += "missing;"
			continue
		}
		s += fmt.Sprintf("%d@%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return s
}
