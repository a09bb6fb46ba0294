package pki

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestClusterCredsRoundTrip(t *testing.T) {
	c, err := NewCluster("n1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := c.Save(dir); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CAKeyFile, CertKeyFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	got, err := LoadDir(dir, "n1")
	if err != nil {
		t.Fatal(err)
	}
	if got.CA == nil || !got.CACert.Equal(c.CACert) {
		t.Fatal("CA not loaded back")
	}
	if _, err := LoadDir(dir, "n2"); !errors.Is(err, ErrNoIdentity) {
		t.Fatalf("loading n1's certificate as n2: %v, want ErrNoIdentity", err)
	}
	if _, err := LoadDir(t.TempDir(), "n1"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("empty dir: %v, want not exist", err)
	}
}

func TestSignCSR(t *testing.T) {
	c, err := NewCluster("n1")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := NewKey()
	csr, err := NewCSR("n2", key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CA.SignCSR(csr, "n3"); !errors.Is(err, ErrRequest) {
		t.Fatalf("CSR for n2 signed as n3: %v", err)
	}
	certPEM, err := c.CA.SignCSR(csr, "n2")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := EncodeKey(key)
	n2, err := FromPEM("n2", c.CA.CertPEM(), certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var k Keyring
	k.Set(c)
	if id, err := k.PeerID(n2.Cert.Certificate); err != nil || id != "n2" {
		t.Fatalf("PeerID = %q, %v", id, err)
	}
	other, _ := NewCluster("n2")
	if _, err := k.PeerID(other.Cert.Certificate); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("foreign CA accepted: %v", err)
	}
}

func TestCheckNodeID(t *testing.T) {
	for name, tc := range map[string]struct {
		id string
		ok bool
	}{
		"plain":      {"gpu-1", true},
		"dots":       {"a.b_c", true},
		"empty":      {"", false},
		"slash":      {"a/b", false},
		"leading -":  {"-a", false},
		"too long":   {string(make([]byte, 129)), false},
		"max length": {"a" + string(repeat('b', 127)), true},
		"space":      {"a b", false},
	} {
		t.Run(name, func(t *testing.T) {
			if err := CheckNodeID(tc.id); (err == nil) != tc.ok {
				t.Fatalf("CheckNodeID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
			}
		})
	}
}

func repeat(b byte, n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// TestKeyringTLS runs a handshake between two nodes of one CA, and shows
// that a node of another CA and a client without a certificate are refused.
func TestKeyringTLS(t *testing.T) {
	c1, _ := NewCluster("n1")
	key, _ := NewKey()
	certPEM, _ := c1.CA.Issue("n2", key.Public(), nil)
	keyPEM, _ := EncodeKey(key)
	c2, err := FromPEM("n2", c1.CA.CertPEM(), certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var server, client, stranger, empty Keyring
	server.Set(c1)
	client.Set(c2)
	foreign, _ := NewCluster("n2")
	stranger.Set(foreign)
	accepted := make(chan string, 4)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", server.ServerConfig(func(id string) error { accepted <- id; return nil }))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	dial := func(k *Keyring) error {
		c, err := tls.Dial("tcp", ln.Addr().String(), k.ClientConfig("x"))
		if err != nil {
			return err
		}
		defer c.Close()
		// TLS 1.3 reports a refused client certificate on the first read.
		_, err = c.Read(make([]byte, 1))
		if errors.Is(err, net.ErrClosed) || err == nil {
			return nil
		}
		return err
	}
	if err := dial(&client); err != nil && !isEOF(err) {
		t.Fatalf("member refused: %v", err)
	}
	if id := <-accepted; id != "n2" {
		t.Fatalf("accepted %q, want n2", id)
	}
	if err := dial(&stranger); err == nil || isEOF(err) {
		t.Fatalf("node of another CA: %v, want a TLS error", err)
	}
	if err := dial(&empty); err == nil || isEOF(err) {
		t.Fatalf("client without certificate: %v, want a TLS error", err)
	}
}

func isEOF(err error) bool { return errors.Is(err, io.EOF) }
