package state

import (
	"maps"
	"path"
	"sort"
)

// Key roles. An admin key may use the admin API and inference; an
// inference key /v1 and /api only.
const (
	RoleAdmin     = "admin"
	RoleInference = "inference"
)

// Limits are a key's quotas. They are stored and shown; nothing enforces
// them yet. Zero is no limit.
type Limits struct {
	RequestsPerMinute int64 `json:"requests_per_minute,omitempty"`
	TokensPerMinute   int64 `json:"tokens_per_minute,omitempty"`
	Concurrent        int64 `json:"concurrent,omitempty"`
	TokensPerDay      int64 `json:"tokens_per_day,omitempty"`
	TokensPerMonth    int64 `json:"tokens_per_month,omitempty"`
}

// APIKey is a client's credential. The state never holds the secret:
// Hash is a keyed hash of it (HMAC with a key derived from the cluster
// token, which is not in the state), so a leaked snapshot does not allow
// guessing secrets offline. Times are the proposer's clock, Unix ms.
type APIKey struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	Role string `json:"role"`
	// Hash is the hex HMAC of the current secret; Prefix its visible
	// start (e.g. "sk-sovra-ab12cd34"), for recognition.
	Hash   string `json:"hash"`
	Prefix string `json:"prefix,omitempty"`
	// Models are the deployment names or patterns (path.Match) the key
	// may use; empty: all.
	Models []string `json:"models,omitempty"`
	// Jurisdictions, when not empty, are the only jurisdictions (node
	// label jurisdiction, upper case) whose nodes may serve its requests.
	Jurisdictions []string          `json:"jurisdictions,omitempty"`
	Limits        Limits            `json:"limits"`
	Labels        map[string]string `json:"labels,omitempty"`
	// Expires is when the key stops working (0: never).
	Expires  int64 `json:"expires,omitempty"`
	Created  int64 `json:"created"`
	Modified int64 `json:"modified,omitempty"`
	// LastUsed is the latest use the nodes reported (TouchAPIKeys): it
	// lags by up to the nodes' report interval.
	LastUsed int64 `json:"last_used,omitempty"`
	// PrevHash is the secret a rotation replaced, valid until
	// PrevExpires; PrevPrefix its visible start.
	PrevHash      string `json:"prev_hash,omitempty"`
	PrevPrefix    string `json:"prev_prefix,omitempty"`
	PrevExpires   int64  `json:"prev_expires,omitempty"`
	Rotated       int64  `json:"rotated,omitempty"`
	CreatedIndex  uint64 `json:"created_index"`
	ModifiedIndex uint64 `json:"modified_index"`
}

// Clone is a deep copy.
func (k *APIKey) Clone() *APIKey {
	c := *k
	c.Models = cloneSlice(k.Models)
	c.Jurisdictions = cloneSlice(k.Jurisdictions)
	c.Labels = maps.Clone(k.Labels)
	return &c
}

// Bodies of the key commands.
type (
	// PutAPIKey creates a key (the proposer makes its id and secret and
	// sends only the secret's hash).
	PutAPIKey struct {
		Key APIKey `json:"key"`
	}
	// UpdateAPIKey changes the fields it sets.
	UpdateAPIKey struct {
		ID            string             `json:"id"`
		Name          *string            `json:"name,omitempty"`
		Role          *string            `json:"role,omitempty"`
		Models        *[]string          `json:"models,omitempty"`
		Jurisdictions *[]string          `json:"jurisdictions,omitempty"`
		Limits        *Limits            `json:"limits,omitempty"`
		Labels        *map[string]string `json:"labels,omitempty"`
		Expires       *int64             `json:"expires,omitempty"`
		Time          int64              `json:"time"`
	}
	// RotateAPIKey gives a key a new secret. The old one stays valid
	// until GraceUntil (0 or not after Time: not at all).
	RotateAPIKey struct {
		ID         string `json:"id"`
		Hash       string `json:"hash"`
		Prefix     string `json:"prefix"`
		GraceUntil int64  `json:"grace_until,omitempty"`
		Time       int64  `json:"time"`
	}
	// DeleteAPIKey revokes a key.
	DeleteAPIKey struct {
		ID string `json:"id"`
	}
	// TouchAPIKeys records keys' last uses, as one node saw them since
	// its last report: LastUsed becomes the later of itself and the time.
	// Written with FlagIgnorable.
	TouchAPIKeys struct {
		Node  string           `json:"node,omitempty"`
		Times map[string]int64 `json:"times"`
	}
)

// Bounds of what a key holds, kept by Apply.
const (
	maxKeyList  = 64
	maxKeyField = 256
)

// checkKey says what is wrong with a key's fields, or "".
func checkKey(k *APIKey) string {
	if e := checkName(k.ID); e != "" {
		return "id " + e
	}
	switch {
	case k.Role != RoleAdmin && k.Role != RoleInference:
		return "role must be admin or inference"
	case k.Hash == "":
		return "has no hash"
	case len(k.Models) > maxKeyList || len(k.Jurisdictions) > maxKeyList || len(k.Labels) > maxKeyList:
		return "lists too many models, jurisdictions or labels"
	case len(k.ID) > maxKeyField || len(k.Name) > maxKeyField || len(k.Hash) > maxKeyField || len(k.Prefix) > maxKeyField:
		return "has a field that is too long"
	case k.Expires < 0 || k.Limits.negative():
		return "has a negative expiry or limit"
	}
	for _, m := range k.Models {
		if _, err := path.Match(m, ""); err != nil || m == "" || len(m) > maxKeyField {
			return "has a bad model pattern"
		}
	}
	for _, j := range k.Jurisdictions {
		if j == "" || len(j) > maxKeyField {
			return "has a bad jurisdiction"
		}
	}
	for l, v := range k.Labels {
		if l == "" || len(l) > maxKeyField || len(v) > maxKeyField {
			return "has a bad label"
		}
	}
	return ""
}

func (l Limits) negative() bool {
	return l.RequestsPerMinute < 0 || l.TokensPerMinute < 0 || l.Concurrent < 0 || l.TokensPerDay < 0 || l.TokensPerMonth < 0
}

// hashTaken reports whether another key than id holds hash.
func (s *State) hashTaken(id, hash string) bool {
	for _, k := range s.APIKeys {
		if k != nil && k.ID != id && (k.Hash == hash || k.PrevHash == hash) {
			return true
		}
	}
	return false
}

func (s *State) putAPIKey(index uint64, c *PutAPIKey) Outcome {
	k := c.Key.Clone()
	if e := checkKey(k); e != "" {
		return fail("invalid", "key %s", e)
	}
	if _, ok := s.APIKeys[k.ID]; ok {
		return fail("exists", "key %q exists", k.ID)
	}
	if s.hashTaken(k.ID, k.Hash) {
		return fail("exists", "another key has this secret")
	}
	k.PrevHash, k.PrevPrefix, k.PrevExpires, k.LastUsed = "", "", 0, 0
	k.CreatedIndex, k.ModifiedIndex, k.Modified = index, index, k.Created
	s.APIKeys[k.ID] = k
	s.KeysIndex = index
	return value(k.View())
}

func (s *State) updateAPIKey(index uint64, c *UpdateAPIKey) Outcome {
	old, ok := s.APIKeys[c.ID]
	if !ok {
		return fail("not_found", "key %q does not exist", c.ID)
	}
	k := old.Clone()
	setIf(&k.Name, c.Name)
	setIf(&k.Role, c.Role)
	setIf(&k.Models, c.Models)
	setIf(&k.Jurisdictions, c.Jurisdictions)
	setIf(&k.Limits, c.Limits)
	setIf(&k.Labels, c.Labels)
	setIf(&k.Expires, c.Expires)
	k.Models, k.Jurisdictions, k.Labels = cloneSlice(k.Models), cloneSlice(k.Jurisdictions), maps.Clone(k.Labels)
	if e := checkKey(k); e != "" {
		return fail("invalid", "key %s", e)
	}
	k.Modified, k.ModifiedIndex = c.Time, index
	s.APIKeys[k.ID] = k
	s.KeysIndex = index
	return value(k.View())
}

func setIf[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func (s *State) rotateAPIKey(index uint64, c *RotateAPIKey) Outcome {
	old, ok := s.APIKeys[c.ID]
	switch {
	case !ok:
		return fail("not_found", "key %q does not exist", c.ID)
	case c.Hash == "" || len(c.Hash) > maxKeyField || len(c.Prefix) > maxKeyField:
		return fail("invalid", "a rotation needs the new secret's hash")
	case c.Hash == old.Hash || s.hashTaken(c.ID, c.Hash):
		return fail("exists", "another key has this secret")
	}
	k := old.Clone()
	k.PrevHash, k.PrevPrefix, k.PrevExpires = "", "", 0
	if c.GraceUntil > c.Time {
		k.PrevHash, k.PrevPrefix, k.PrevExpires = old.Hash, old.Prefix, c.GraceUntil
	}
	k.Hash, k.Prefix, k.Rotated, k.Modified, k.ModifiedIndex = c.Hash, c.Prefix, c.Time, c.Time, index
	s.APIKeys[k.ID] = k
	s.KeysIndex = index
	return value(k.View())
}

func (s *State) deleteAPIKey(index uint64, c *DeleteAPIKey) Outcome {
	if _, ok := s.APIKeys[c.ID]; !ok {
		return fail("not_found", "key %q does not exist", c.ID)
	}
	delete(s.APIKeys, c.ID)
	s.KeysIndex = index
	return Outcome{}
}

func (s *State) touchAPIKeys(_ uint64, c *TouchAPIKeys) Outcome {
	for id, t := range c.Times {
		if k, ok := s.APIKeys[id]; ok && t > k.LastUsed {
			k.LastUsed = t
		}
	}
	return Outcome{}
}

// KeyView is a key as the API shows it: never the hashes.
type KeyView struct {
	ID            string            `json:"id"`
	Name          string            `json:"name,omitempty"`
	Role          string            `json:"role"`
	Prefix        string            `json:"prefix,omitempty"`
	Models        []string          `json:"models"`
	Jurisdictions []string          `json:"jurisdictions"`
	Limits        Limits            `json:"limits"`
	Labels        map[string]string `json:"labels"`
	Expires       int64             `json:"expires,omitempty"`
	Created       int64             `json:"created"`
	Modified      int64             `json:"modified,omitempty"`
	LastUsed      int64             `json:"last_used,omitempty"`
	Rotated       int64             `json:"rotated,omitempty"`
	// PrevPrefix and PrevExpires show a rotated-out secret still valid.
	PrevPrefix  string `json:"prev_prefix,omitempty"`
	PrevExpires int64  `json:"prev_expires,omitempty"`
}

// View is the key without its hashes.
func (k *APIKey) View() KeyView {
	v := KeyView{ID: k.ID, Name: k.Name, Role: k.Role, Prefix: k.Prefix, Models: cloneSlice(k.Models),
		Jurisdictions: cloneSlice(k.Jurisdictions), Limits: k.Limits, Labels: maps.Clone(k.Labels),
		Expires: k.Expires, Created: k.Created, Modified: k.Modified, LastUsed: k.LastUsed, Rotated: k.Rotated}
	if k.PrevHash != "" {
		v.PrevPrefix, v.PrevExpires = k.PrevPrefix, k.PrevExpires
	}
	if v.Models == nil {
		v.Models = []string{}
	}
	if v.Jurisdictions == nil {
		v.Jurisdictions = []string{}
	}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	return v
}

// KeyList returns the keys sorted by id.
func (s *State) KeyList() []*APIKey {
	out := make([]*APIKey, 0, len(s.APIKeys))
	for _, k := range s.APIKeys {
		if k != nil {
			out = append(out, k)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
