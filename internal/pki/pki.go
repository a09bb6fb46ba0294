// Package pki owns the cluster's certificates: a cluster CA, node
// certificates whose identity is the node id, certificate requests a
// joining node sends, and the checks that turn a peer's certificate chain
// back into a node id. It uses the standard library only.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"strings"
	"time"
)

// Errors of this package. Match them with errors.Is.
var (
	// ErrNoIdentity means a certificate names no sovra node.
	ErrNoIdentity = errors.New("pki: the certificate names no sovra node")
	// ErrUntrusted means a certificate does not chain to the cluster CA.
	ErrUntrusted = errors.New("pki: the certificate is not signed by the cluster CA")
	// ErrBadPEM means PEM data held no usable block of the expected kind.
	ErrBadPEM = errors.New("pki: malformed PEM")
	// ErrRequest means a certificate request is malformed or names another
	// node than the one asking.
	ErrRequest = errors.New("pki: bad certificate request")
)

// Validity of what NewCA and Issue make.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	NodeValidity = 5 * 365 * 24 * time.Hour
)

// uriScheme and uriHost make a node's identity URI: sovra://node/<id>.
const (
	uriScheme = "sovra"
	uriHost   = "node"
)

// NodeURI is the URI a node certificate carries as its identity.
func NodeURI(nodeID string) *url.URL {
	return &url.URL{Scheme: uriScheme, Host: uriHost, Path: "/" + nodeID}
}

// CA is a certificate authority: its certificate and signing key.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// NewCA creates a self-signed CA named name.
func NewCA(name string) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"sovra"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CAValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, key: key}, nil
}

// LoadCA reads a CA from its PEM certificate and PEM private key.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("%w: %s is not a CA certificate", ErrBadPEM, cert.Subject.CommonName)
	}
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%w: the CA key does not match its certificate", ErrBadPEM)
	}
	return &CA{Cert: cert, key: key}, nil
}

// CertPEM is the CA certificate in PEM.
func (ca *CA) CertPEM() []byte { return EncodeCert(ca.Cert.Raw) }

// KeyPEM is the CA private key in PEM. Keep it secret.
func (ca *CA) KeyPEM() ([]byte, error) { return EncodeKey(ca.key) }

// Pool is a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Issue signs a certificate for node nodeID over pub, good for both ends of
// a TLS connection. hosts (DNS names or IPs) are added as subject
// alternative names, for clients that check them.
func (ca *CA) Issue(nodeID string, pub crypto.PublicKey, hosts []string) ([]byte, error) {
	if err := CheckNodeID(nodeID); err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: nodeID, Organization: []string{"sovra"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(NodeValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{NodeURI(nodeID)},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: issue certificate for %s: %w", nodeID, err)
	}
	return EncodeCert(der), nil
}

// NewCSR makes a certificate request for nodeID signed by key.
func NewCSR(nodeID string, key crypto.Signer) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: nodeID},
		URIs:    []*url.URL{NodeURI(nodeID)},
	}, key)
	if err != nil {
		return nil, fmt.Errorf("pki: certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// SignCSR checks that csrPEM is a well-signed request naming nodeID and
// issues its certificate.
func (ca *CA) SignCSR(csrPEM []byte, nodeID string) ([]byte, error) {
	b, _ := pem.Decode(csrPEM)
	if b == nil || b.Type != "CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: no CERTIFICATE REQUEST block", ErrRequest)
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRequest, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRequest, err)
	}
	if csr.Subject.CommonName != nodeID {
		return nil, fmt.Errorf("%w: it names node %.64q, not %.64q", ErrRequest, csr.Subject.CommonName, nodeID)
	}
	return ca.Issue(nodeID, csr.PublicKey, nil)
}

// NodeIDOf is the node a certificate names: its sovra://node/ URI, or,
// for certificates made by other tools, its common name.
func NodeIDOf(cert *x509.Certificate) (string, error) {
	for _, u := range cert.URIs {
		if u.Scheme == uriScheme && u.Host == uriHost {
			id := strings.TrimPrefix(u.Path, "/")
			if CheckNodeID(id) == nil {
				return id, nil
			}
		}
	}
	if CheckNodeID(cert.Subject.CommonName) == nil {
		return cert.Subject.CommonName, nil
	}
	return "", ErrNoIdentity
}

// Verify checks that the peer's chain (leaf first, as TLS hands it over)
// leads to a CA in roots and returns the node it names.
func Verify(roots *x509.CertPool, rawCerts [][]byte) (string, error) {
	if len(rawCerts) == 0 {
		return "", fmt.Errorf("%w: no certificate", ErrUntrusted)
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return "", fmt.Errorf("%w: %v", ErrUntrusted, err)
		}
		certs[i] = c
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrUntrusted, err)
	}
	return NodeIDOf(certs[0])
}

// CheckNodeID reports whether id can name a node: 1 to 128 bytes of
// letters, digits, '.', '_' and '-', starting with a letter or digit.
func CheckNodeID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("%w: a node id has 1 to 128 characters", ErrNoIdentity)
	}
	for i, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || (i > 0 && (r == '.' || r == '_' || r == '-'))
		if !ok {
			return fmt.Errorf("%w: node id %.64q: use letters, digits, '.', '_' and '-'", ErrNoIdentity, id)
		}
	}
	return nil
}

// Fingerprint is the SHA-256 of a DER certificate, in hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return fmt.Sprintf("%x", sum[:])
}

// NewKey makes an ECDSA P-256 private key.
func NewKey() (crypto.Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: new key: %w", err)
	}
	return k, nil
}

// EncodeCert is DER in a CERTIFICATE PEM block.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// EncodeKey is a private key in a PKCS #8 PEM block.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCert reads the first CERTIFICATE block of PEM data.
func ParseCert(data []byte) (*x509.Certificate, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, fmt.Errorf("%w: no CERTIFICATE block", ErrBadPEM)
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: %v", ErrBadPEM, err)
			}
			return c, nil
		}
	}
}

// ParseKey reads a PKCS #8, EC or PKCS #1 private key from PEM data.
func ParseKey(data []byte) (crypto.Signer, error) {
	b, _ := pem.Decode(data)
	if b == nil {
		return nil, fmt.Errorf("%w: no private key block", ErrBadPEM)
	}
	var key any
	var err error
	switch b.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPEM, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%w: unsupported key type %T", ErrBadPEM, key)
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}
