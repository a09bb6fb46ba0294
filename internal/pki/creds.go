package pki

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// File names of a node's credentials in its directory.
const (
	CAFile      = "ca.pem"
	CAKeyFile   = "ca-key.pem"
	CertFile    = "node.pem"
	CertKeyFile = "node-key.pem"
)

// Creds are a node's cluster credentials: the CA it trusts, its own
// certificate, and the CA's key when this node may issue certificates.
type Creds struct {
	NodeID string
	CACert *x509.Certificate
	Cert   tls.Certificate
	// CA signs joining nodes' requests; nil on a node without the CA key.
	CA *CA
}

// NewCluster makes the credentials of a new cluster's first node: a new CA
// and this node's certificate signed by it.
func NewCluster(nodeID string) (*Creds, error) {
	ca, err := NewCA("sovra cluster CA")
	if err != nil {
		return nil, err
	}
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	certPEM, err := ca.Issue(nodeID, key.Public(), nil)
	if err != nil {
		return nil, err
	}
	keyPEM, err := EncodeKey(key)
	if err != nil {
		return nil, err
	}
	c, err := FromPEM(nodeID, ca.CertPEM(), certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	c.CA = ca
	return c, nil
}

// FromPEM builds credentials from PEM data and checks that the certificate
// chains to the CA and names nodeID.
func FromPEM(nodeID string, caPEM, certPEM, keyPEM []byte) (*Creds, error) {
	caCert, err := ParseCert(caPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: node certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	id, err := Verify(pool, cert.Certificate)
	if err != nil {
		return nil, fmt.Errorf("node certificate: %w", err)
	}
	if id != nodeID {
		return nil, fmt.Errorf("%w: the node certificate names %q, but this node is %q", ErrNoIdentity, id, nodeID)
	}
	return &Creds{NodeID: nodeID, CACert: caCert, Cert: cert}, nil
}

// LoadFiles reads credentials from PEM files (the operator's own PKI).
func LoadFiles(nodeID, caFile, certFile, keyFile string) (*Creds, error) {
	var data [3][]byte
	for i, f := range []string{caFile, certFile, keyFile} {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("pki: %w", err)
		}
		data[i] = b
	}
	return FromPEM(nodeID, data[0], data[1], data[2])
}

// LoadDir reads the credentials saved in dir; an error matching
// fs.ErrNotExist means there are none yet.
func LoadDir(dir, nodeID string) (*Creds, error) {
	c, err := LoadFiles(nodeID, filepath.Join(dir, CAFile), filepath.Join(dir, CertFile), filepath.Join(dir, CertKeyFile))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return c, nil
	case err != nil:
		return nil, fmt.Errorf("pki: %w", err)
	}
	if c.CA, err = LoadCA(EncodeCert(c.CACert.Raw), keyPEM); err != nil {
		return nil, err
	}
	return c, nil
}

// Save writes the credentials to dir, private keys with mode 0600.
func (c *Creds) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	key, ok := c.Cert.PrivateKey.(crypto.Signer)
	if !ok {
		return fmt.Errorf("%w: unsupported key type %T", ErrBadPEM, c.Cert.PrivateKey)
	}
	keyPEM, err := EncodeKey(key)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		CAFile:      EncodeCert(c.CACert.Raw),
		CertFile:    EncodeCert(c.Cert.Certificate[0]),
		CertKeyFile: keyPEM,
	}
	if c.CA != nil {
		if files[CAKeyFile], err = c.CA.KeyPEM(); err != nil {
			return err
		}
	}
	for name, data := range files {
		if err := writeFileAtomic(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	return nil
}

// WithCA returns a copy of c that may issue certificates with ca, which
// must be the CA c trusts.
func (c *Creds) WithCA(ca *CA) (*Creds, error) {
	if !ca.Cert.Equal(c.CACert) {
		return nil, fmt.Errorf("%w: the cluster CA differs from the one this node trusts", ErrUntrusted)
	}
	cp := *c
	cp.CA = ca
	return &cp, nil
}

// Pool is a pool with the CA the credentials trust.
func (c *Creds) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.CACert)
	return p
}

// writeFileAtomic writes a file durably: the data is synced before the
// rename and the directory after it. Without the syncs a crash, or a disk
// that fails and turns read-only, within seconds of a join left the
// certificate files empty (ext4 allocates a new file's blocks late), and
// the node could not start again.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := writeSynced(tmp, data); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// Keyring holds a node's current credentials. It starts empty on a node
// that has not joined yet: TLS handshakes then fail on both ends.
type Keyring struct {
	cur atomic.Pointer[Creds]

	tempOnce sync.Once
	temp     *tls.Certificate
	tempErr  error
}

// ErrNoCreds means the node has no cluster credentials yet.
var ErrNoCreds = errors.New("pki: this node has no cluster certificate yet (it has not joined)")

// Set replaces the credentials.
func (k *Keyring) Set(c *Creds) { k.cur.Store(c) }

// Get returns the credentials, or nil before any are set.
func (k *Keyring) Get() *Creds { return k.cur.Load() }

// PeerID verifies a peer's certificate chain against the current CA and
// returns the node it names.
func (k *Keyring) PeerID(rawCerts [][]byte) (string, error) {
	c := k.Get()
	if c == nil {
		return "", ErrNoCreds
	}
	return Verify(c.Pool(), rawCerts)
}

// ConnPeerID is PeerID for an established TLS connection.
func (k *Keyring) ConnPeerID(st *tls.ConnectionState) (string, error) {
	if st == nil || len(st.PeerCertificates) == 0 {
		return "", fmt.Errorf("%w: no client certificate", ErrUntrusted)
	}
	raw := make([][]byte, len(st.PeerCertificates))
	for i, c := range st.PeerCertificates {
		raw[i] = c.Raw
	}
	return k.PeerID(raw)
}

// serverCertificate is the node's certificate, or before it has one a
// throwaway self-signed one: a node that is joining or forming still
// answers TLS, for calls that prove themselves with the cluster token.
// Clients of the cluster CA refuse the throwaway certificate.
func (k *Keyring) serverCertificate() (*tls.Certificate, error) {
	if c := k.Get(); c != nil {
		return &c.Cert, nil
	}
	k.tempOnce.Do(func() { k.temp, k.tempErr = selfSigned() })
	return k.temp, k.tempErr
}

func selfSigned() (*tls.Certificate, error) {
	ca, err := NewCA("sovra node without a cluster certificate")
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{ca.Cert.Raw}, PrivateKey: ca.key, Leaf: ca.Cert}, nil
}

// ServerConfig serves TLS 1.3 with the node's certificate. With accept
// set, a client must present a certificate of the cluster CA and accept
// must approve the node it names; without, a client certificate is
// optional and checked later (ConnPeerID).
func (k *Keyring) ServerConfig(accept func(nodeID string) error) *tls.Config {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return k.serverCertificate() },
		ClientAuth:     tls.RequestClientCert,
	}
	if accept != nil {
		cfg.ClientAuth = tls.RequireAnyClientCert
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			id, err := k.PeerID(raw)
			if err != nil {
				return err
			}
			return accept(id)
		}
	}
	return cfg
}

// ClientConfig dials a peer with the node's certificate and accepts a
// server whose certificate chains to the cluster CA, whatever its host
// names: peers are known by node id, not by DNS. serverName is sent as
// SNI.
func (k *Keyring) ClientConfig(serverName string) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		ServerName:           serverName,
		InsecureSkipVerify:   true, // replaced by VerifyPeerCertificate below
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return k.clientCertificate() },
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			_, err := k.PeerID(raw)
			return err
		},
	}
}

// clientCertificate is the certificate a client presents: none (an empty
// one) before the node has credentials, so a joining node can still ask.
func (k *Keyring) clientCertificate() (*tls.Certificate, error) {
	if c := k.Get(); c != nil {
		return &c.Cert, nil
	}
	return &tls.Certificate{}, nil
}
