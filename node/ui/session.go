package ui

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// Sessions are kept in memory on the node that signed the operator in:
// the browser holds only a random id (in an HttpOnly, SameSite=Strict
// cookie), the node holds the credential the session acts with and its
// CSRF token. A node's restart signs everyone out of it.

// Session defaults.
const (
	DefaultSessionTTL  = 8 * time.Hour
	DefaultIdleTimeout = 30 * time.Minute
	DefaultMaxSessions = 1000
)

// session is one signed-in browser.
type session struct {
	// credential is the admin credential the session's admin calls are
	// made with; never shown, logged or sent back to the browser.
	credential string
	// who names the credential for display: "management token" or a
	// key's visible prefix.
	who string
	// csrf is the token the session's forms carry.
	csrf    string
	created time.Time
	seen    time.Time
	// streams counts the session's open live-update streams.
	streams int
}

// sessionStore holds the sessions by a hash of their id, so that neither
// a lookup's timing nor a dump of memory hands out a usable id.
type sessionStore struct {
	ttl, idle time.Duration
	max       int
	now       func() time.Time

	mu sync.Mutex
	m  map[[sha256.Size]byte]*session
}

func newSessionStore(ttl, idle time.Duration, max int, now func() time.Time) *sessionStore {
	return &sessionStore{ttl: ttl, idle: idle, max: max, now: now, m: map[[sha256.Size]byte]*session{}}
}

// newSecret is 32 random bytes, base64url.
func newSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// create starts a session for credential and returns its id (the
// cookie's value).
func (s *sessionStore) create(credential, who string) (string, *session, error) {
	id, err := newSecret()
	if err != nil {
		return "", nil, err
	}
	csrf, err := newSecret()
	if err != nil {
		return "", nil, err
	}
	now := s.now()
	ss := &session{credential: credential, who: who, csrf: csrf, created: now, seen: now}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sweep(now)
	for len(s.m) >= s.max {
		s.evictOldest()
	}
	s.m[sha256.Sum256([]byte(id))] = ss
	return id, ss, nil
}

// get returns the live session of id and marks it used.
func (s *sessionStore) get(id string) (*session, bool) {
	if id == "" {
		return nil, false
	}
	key := sha256.Sum256([]byte(id))
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.m[key]
	if !ok {
		return nil, false
	}
	if s.expired(ss, now) {
		delete(s.m, key)
		return nil, false
	}
	ss.seen = now
	return ss, true
}

// alive reports whether ss is still a live session (a stream checks
// it between events without marking it used).
func (s *sessionStore) alive(id string, ss *session) bool {
	key := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.m[key]
	return ok && cur == ss && !s.expired(ss, s.now())
}

// remove ends the session of id.
func (s *sessionStore) remove(id string) {
	key := sha256.Sum256([]byte(id))
	s.mu.Lock()
	delete(s.m, key)
	s.mu.Unlock()
}

// openStream counts a live-update stream of ss, refusing past limit.
func (s *sessionStore) openStream(ss *session, limit int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss.streams >= limit {
		return false
	}
	ss.streams++
	return true
}

func (s *sessionStore) closeStream(ss *session) {
	s.mu.Lock()
	ss.streams--
	s.mu.Unlock()
}

func (s *sessionStore) expired(ss *session, now time.Time) bool {
	return now.Sub(ss.created) >= s.ttl || now.Sub(ss.seen) >= s.idle
}

// sweep drops expired sessions; s.mu is held.
func (s *sessionStore) sweep(now time.Time) {
	for k, ss := range s.m {
		if s.expired(ss, now) {
			delete(s.m, k)
		}
	}
}

// evictOldest drops the session used least recently; s.mu is held.
func (s *sessionStore) evictOldest() {
	var oldest [sha256.Size]byte
	var at time.Time
	first := true
	for k, ss := range s.m {
		if first || ss.seen.Before(at) {
			oldest, at, first = k, ss.seen, false
		}
	}
	delete(s.m, oldest)
}

// len is the number of sessions held.
func (s *sessionStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// tokenEqual compares two tokens in constant time; an empty one never
// matches.
func tokenEqual(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
