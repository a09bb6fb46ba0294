package auth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/sovra/sovra/cluster/state"
)

// KeyPrefix starts every API key secret.
const KeyPrefix = "sk-sovra-"

// ErrNoCluster is a key operation on a node outside any cluster.
var ErrNoCluster = errors.New("auth: API keys need a cluster: a node outside one has no cluster token to hash them with")

// hmacLabel separates the key-hashing key from other uses of the token.
const hmacLabel = "sovra api keys"

// Hasher computes the keyed hash under which the state files a key's
// secret: HMAC-SHA256 with HMAC(cluster token, "sovra api keys") as key.
// The cluster token is the same on every node and never in the state, so
// a leaked snapshot does not allow guessing secrets offline.
type Hasher struct {
	key  []byte
	pool sync.Pool // of HMAC states over key, reset before each use
}

// NewHasher derives the hashing key from the cluster token.
func NewHasher(clusterToken string) (*Hasher, error) {
	if clusterToken == "" {
		return nil, ErrNoCluster
	}
	m := hmac.New(sha256.New, []byte(clusterToken))
	m.Write([]byte(hmacLabel))
	h := &Hasher{key: m.Sum(nil)}
	h.pool.New = func() any { return hmac.New(sha256.New, h.key) }
	return h, nil
}

// Hash is the hex keyed hash of a secret.
func (h *Hasher) Hash(secret string) string {
	m := h.pool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(secret))
	var sum [sha256.Size]byte
	out := hex.EncodeToString(m.Sum(sum[:0]))
	h.pool.Put(m)
	return out
}

// NewKey returns a new key's id, secret (KeyPrefix and 192 random bits in
// hex) and the secret's visible prefix (KeyPrefix and 8 hex digits).
func NewKey() (id, secret, prefix string, err error) {
	b := make([]byte, 6+24)
	if _, err := rand.Read(b); err != nil {
		return "", "", "", fmt.Errorf("auth: new key: %w", err)
	}
	id = "key-" + hex.EncodeToString(b[:6])
	secret = KeyPrefix + hex.EncodeToString(b[6:])
	return id, secret, secret[:len(KeyPrefix)+8], nil
}

// StateReader reads the replicated state (*state.Machine).
type StateReader interface {
	Read(fn func(*state.State))
}

// StateKeys is the KeyStore of the keys in the replicated state. It
// looks a secret up by its keyed hash in an index it rebuilds when the
// keys change (State.KeysIndex) or the state is replaced, checks expiry
// and rotation grace against this node's clock, and remembers each key's
// last use for TakeUsed.
type StateKeys struct {
	st  StateReader
	h   *Hasher
	now func() time.Time

	mu  sync.Mutex // serialises rebuilds
	idx atomic.Pointer[keyIndex]

	usedMu sync.Mutex
	used   map[string]int64
}

type keyIndex struct {
	st     *state.State
	at     uint64
	byHash map[string]keyEntry
}

// keyEntry is a principal and until when its secret is good (Unix ms; 0:
// no end).
type keyEntry struct {
	p     Principal
	until int64
}

// NewStateKeys builds the key store over st; now is the clock (time.Now
// when nil).
func NewStateKeys(st StateReader, h *Hasher, now func() time.Time) *StateKeys {
	if now == nil {
		now = time.Now
	}
	return &StateKeys{st: st, h: h, now: now, used: map[string]int64{}}
}

// Lookup implements KeyStore.
func (k *StateKeys) Lookup(secret string) (Principal, bool) {
	if !strings.HasPrefix(secret, KeyPrefix) {
		return Principal{}, false
	}
	hash := k.h.Hash(secret)
	var (
		e  keyEntry
		ok bool
	)
	k.st.Read(func(s *state.State) { e, ok = k.index(s).byHash[hash] })
	now := k.now().UnixMilli()
	if !ok || (e.until != 0 && now >= e.until) {
		return Principal{}, false
	}
	k.usedMu.Lock()
	k.used[e.p.KeyID] = now
	k.usedMu.Unlock()
	return e.p, true
}

// TakeUsed returns the keys used since the last call, with the time of
// their last use (Unix ms), and forgets them.
func (k *StateKeys) TakeUsed() map[string]int64 {
	k.usedMu.Lock()
	defer k.usedMu.Unlock()
	if len(k.used) == 0 {
		return nil
	}
	out := k.used
	k.used = map[string]int64{}
	return out
}

// index is the index of s, rebuilt when stale; called under s's lock.
func (k *StateKeys) index(s *state.State) *keyIndex {
	if idx := k.idx.Load(); idx != nil && idx.st == s && idx.at == s.KeysIndex {
		return idx
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if idx := k.idx.Load(); idx != nil && idx.st == s && idx.at == s.KeysIndex {
		return idx
	}
	idx := &keyIndex{st: s, at: s.KeysIndex, byHash: make(map[string]keyEntry, len(s.APIKeys))}
	for _, key := range s.APIKeys {
		if key == nil {
			continue
		}
		p := Principal{KeyID: key.ID, Role: Role(key.Role), Models: slices.Clone(key.Models),
			Jurisdictions: slices.Clone(key.Jurisdictions), Limits: key.Limits}
		idx.byHash[key.Hash] = keyEntry{p: p, until: key.Expires}
		if key.PrevHash != "" {
			until := key.PrevExpires
			if key.Expires != 0 && key.Expires < until {
				until = key.Expires
			}
			idx.byHash[key.PrevHash] = keyEntry{p: p, until: until}
		}
	}
	k.idx.Store(idx)
	return idx
}

// Keys is a KeyStore that asks each of its stores in turn.
type Keys []KeyStore

// Lookup implements KeyStore.
func (ks Keys) Lookup(secret string) (Principal, bool) {
	for _, k := range ks {
		if k == nil {
			continue
		}
		if p, ok := k.Lookup(secret); ok {
			return p, true
		}
	}
	return Principal{}, false
}

// AllowsModel reports whether the principal may use a model known by any
// of names (the name asked for, the deployments it resolves to).
func (p Principal) AllowsModel(names ...string) bool {
	if len(p.Models) == 0 {
		return true
	}
	for _, pat := range p.Models {
		for _, n := range names {
			if ok, _ := path.Match(pat, strings.ToLower(n)); ok {
				return true
			}
		}
	}
	return false
}

// Narrow returns the jurisdictions a request may be served in: those it
// asked for (a Sovra-Jurisdiction header) within the key's own. Asking
// only for jurisdictions outside the key's is ErrJurisdictionForbidden.
func (p Principal) Narrow(asked []string) ([]string, error) {
	switch {
	case len(p.Jurisdictions) == 0:
		return asked, nil
	case len(asked) == 0:
		return p.Jurisdictions, nil
	}
	var out []string
	for _, j := range asked {
		if slices.Contains(p.Jurisdictions, j) {
			out = append(out, j)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: it may use %s", ErrJurisdictionForbidden, strings.Join(p.Jurisdictions, ","))
	}
	return out, nil
}

// HeaderPrincipal carries the principal of a forwarded request to the
// node that serves it; only the peer routes, which require a cluster
// certificate, read it.
const HeaderPrincipal = "Sovra-Principal"

type wirePrincipal struct {
	ID            string       `json:"id"`
	Role          Role         `json:"role"`
	Models        []string     `json:"models,omitempty"`
	Jurisdictions []string     `json:"jurisdictions,omitempty"`
	Limits        state.Limits `json:"limits"`
}

// EncodePrincipal is the principal as HeaderPrincipal carries it.
func EncodePrincipal(p Principal) string {
	b, _ := json.Marshal(wirePrincipal{ID: p.KeyID, Role: p.Role, Models: p.Models, Jurisdictions: p.Jurisdictions, Limits: p.Limits})
	return base64.RawURLEncoding.EncodeToString(b)
}

// ErrBadPrincipal is a HeaderPrincipal that does not decode.
var ErrBadPrincipal = errors.New("auth: malformed principal header")

// DecodePrincipal reads a principal encoded by EncodePrincipal.
func DecodePrincipal(s string) (Principal, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Principal{}, ErrBadPrincipal
	}
	var w wirePrincipal
	if err := json.Unmarshal(b, &w); err != nil || w.ID == "" || (w.Role != RoleAdmin && w.Role != RoleInference) {
		return Principal{}, ErrBadPrincipal
	}
	return Principal{KeyID: w.ID, Role: w.Role, Models: w.Models, Jurisdictions: w.Jurisdictions, Limits: w.Limits}, nil
}

// NewContext attaches p to ctx (FromContext finds it).
func NewContext(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}

// SetPrincipal stores p in the request as Require does (the peer routes
// use it for a forwarded request's principal).
func SetPrincipal(c *fiber.Ctx, p Principal) {
	c.Locals(localsKey{}, p)
	c.SetUserContext(NewContext(c.UserContext(), p))
}
