// Package auth is the one seam between a request's credential and who
// makes it: a bearer token (or, for Anthropic clients, an x-api-key) is
// turned into a Principal, a key id and a role, which the Fiber middleware
// Require stores in the request for the handlers and checks against the
// role a route needs. The credentials are the operators' management
// token (role admin) and API keys, which plug in through the KeyStore
// that this package declares (StateKeys: the keys of the replicated
// state). Secrets are compared in constant time or by keyed hash, and
// never logged or put into errors.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/sovra/sovra/cluster/state"
)

// Role is what a principal may do.
type Role string

const (
	// RoleAdmin is an operator: the admin routes and inference.
	RoleAdmin Role = "admin"
	// RoleInference is a tenant: inference only (/v1, /api).
	RoleInference Role = "inference"
	// RoleUser is RoleInference's former name.
	RoleUser = RoleInference
)

// allows reports whether a principal of role r may use a route that needs
// role need.
func (r Role) allows(need Role) bool {
	switch need {
	case RoleInference:
		return r == RoleInference || r == RoleAdmin
	case RoleAdmin:
		return r == RoleAdmin
	}
	return false
}

// Principal is who makes a request.
type Principal struct {
	// KeyID names the credential (never the secret itself); it is the
	// request's fairness key and, later, its accounting key.
	KeyID string
	Role  Role
	// Models are the deployment names or patterns (path.Match) it may
	// use; empty: all.
	Models []string
	// Jurisdictions, when not empty, are the only jurisdictions whose
	// nodes may serve its requests (upper case).
	Jurisdictions []string
	// Limits are its quotas (stored, not enforced yet).
	Limits state.Limits
}

// AdminKeyID is the key id of the management token.
const AdminKeyID = "admin"

// Errors of authentication. ErrMissing and ErrInvalid are both
// ErrUnauthenticated.
var (
	ErrUnauthenticated = errors.New("auth: unauthenticated")
	ErrMissing         = fmt.Errorf("%w: no credential", ErrUnauthenticated)
	ErrInvalid         = fmt.Errorf("%w: invalid credential", ErrUnauthenticated)
	// ErrForbidden is a valid credential whose role may not use the route.
	ErrForbidden = errors.New("auth: the credential's role may not use this route")
	// ErrModelForbidden and ErrJurisdictionForbidden are a valid
	// credential asking for a model or jurisdiction it may not use.
	ErrModelForbidden        = errors.New("auth: the key may not use this model")
	ErrJurisdictionForbidden = errors.New("auth: the key may not use these jurisdictions")
)

// KeyStore finds the principal of an API key. It is declared here, by its
// consumer; the API-key store of the cluster state implements it later.
// Lookup must not take time that depends on how much of secret matches a
// key (look keys up by a hash of the secret, as StaticKeys does).
type KeyStore interface {
	Lookup(secret string) (Principal, bool)
}

// StaticKeys is a KeyStore over a fixed set of secrets.
type StaticKeys map[[sha256.Size]byte]Principal

// NewStaticKeys builds a StaticKeys from secret -> principal.
func NewStaticKeys(keys map[string]Principal) StaticKeys {
	s := make(StaticKeys, len(keys))
	for secret, p := range keys {
		s[sha256.Sum256([]byte(secret))] = p
	}
	return s
}

// Lookup implements KeyStore.
func (s StaticKeys) Lookup(secret string) (Principal, bool) {
	p, ok := s[sha256.Sum256([]byte(secret))]
	return p, ok
}

// Authenticator maps credentials to principals: the management token to
// the admin principal, anything else to what its KeyStore says.
type Authenticator struct {
	admin [sha256.Size]byte
	hasAd bool
	keys  KeyStore
}

// New builds an Authenticator. An empty adminToken admits no operator;
// keys may be nil. With neither, every request is refused.
func New(adminToken string, keys KeyStore) *Authenticator {
	a := &Authenticator{keys: keys, hasAd: adminToken != ""}
	if a.hasAd {
		a.admin = sha256.Sum256([]byte(adminToken))
	}
	return a
}

// Authenticate returns the principal of secret.
func (a *Authenticator) Authenticate(secret string) (Principal, error) {
	if secret == "" {
		return Principal{}, ErrMissing
	}
	// Hashes have one length, so the comparison does not tell the
	// token's length either.
	sum := sha256.Sum256([]byte(secret))
	if a.hasAd && subtle.ConstantTimeCompare(sum[:], a.admin[:]) == 1 {
		return Principal{KeyID: AdminKeyID, Role: RoleAdmin}, nil
	}
	if a.keys != nil {
		if p, ok := a.keys.Lookup(secret); ok {
			return p, nil
		}
	}
	return Principal{}, ErrInvalid
}

// NewToken returns a fresh random token: 32 bytes from crypto/rand,
// base64url without padding.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("auth: new token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
