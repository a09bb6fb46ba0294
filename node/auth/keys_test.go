package auth

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"

	"github.com/sovra/sovra/cluster/state"
)

const clusterToken = "s3cret-cluster-token"

// machine applies key commands to a state machine.
type machine struct {
	t    testing.TB
	m    *state.Machine
	next uint64
}

func newMachine(t testing.TB) *machine { return &machine{t: t, m: state.NewMachine(), next: 1} }

func (m *machine) apply(typ state.Type, body any) {
	m.t.Helper()
	e, err := state.Encode(state.Command{Type: typ, Body: body})
	if err != nil {
		m.t.Fatal(err)
	}
	if out := m.m.Apply(m.next, e); out.ErrCode != "" {
		m.t.Fatalf("%v: %s", typ, out.ErrMsg)
	}
	m.next++
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

func TestHasher(t *testing.T) {
	if _, err := NewHasher(""); !errors.Is(err, ErrNoCluster) {
		t.Fatalf("no token: %v", err)
	}
	a, _ := NewHasher(clusterToken)
	b, _ := NewHasher(clusterToken + "x")
	if a.Hash("s") != a.Hash("s") || a.Hash("s") == b.Hash("s") || a.Hash("s") == a.Hash("t") || len(a.Hash("s")) != 64 {
		t.Fatal("hashes are not keyed, stable and distinct")
	}
	id, secret, prefix, err := NewKey()
	_, secret2, _, _ := NewKey()
	if err != nil || !strings.HasPrefix(id, "key-") || !strings.HasPrefix(secret, prefix) || len(secret) != len(KeyPrefix)+48 ||
		len(prefix) != len(KeyPrefix)+8 || secret == secret2 {
		t.Fatalf("key %q %q %q %v", id, secret, prefix, err)
	}
}

func TestStateKeysLookup(t *testing.T) {
	h, _ := NewHasher(clusterToken)
	m := newMachine(t)
	clk := &clock{now: time.UnixMilli(1000)}
	keys := NewStateKeys(m.m, h, clk.Now)
	put := func(id, secret string, expires int64) {
		m.apply(state.TypePutAPIKey, state.PutAPIKey{Key: state.APIKey{ID: id, Role: state.RoleInference, Hash: h.Hash(secret),
			Models: []string{"chat"}, Jurisdictions: []string{"EU"}, Limits: state.Limits{Concurrent: 2}, Expires: expires, Created: 1000}})
	}
	put("k1", KeyPrefix+"one", 0)
	put("k2", KeyPrefix+"two", 5000)
	want := Principal{KeyID: "k1", Role: RoleInference, Models: []string{"chat"}, Jurisdictions: []string{"EU"}, Limits: state.Limits{Concurrent: 2}}
	check := func(name, secret string, at int64, id string) {
		t.Helper()
		clk.set(time.UnixMilli(at))
		p, ok := keys.Lookup(secret)
		if ok != (id != "") || p.KeyID != id {
			t.Fatalf("%s: %+v %v, want %q", name, p, ok, id)
		}
	}
	check("valid", KeyPrefix+"one", 1000, "k1")
	if p, _ := keys.Lookup(KeyPrefix + "one"); !reflect.DeepEqual(p, want) {
		t.Fatalf("principal %+v", p)
	}
	check("wrong secret", KeyPrefix+"onf", 1000, "")
	check("without the prefix", "one", 1000, "")
	check("before expiry", KeyPrefix+"two", 4999, "k2")
	check("expired", KeyPrefix+"two", 5000, "")

	m.apply(state.TypeRotateAPIKey, state.RotateAPIKey{ID: "k1", Hash: h.Hash(KeyPrefix + "new"), GraceUntil: 3000, Time: 2000})
	check("new secret", KeyPrefix+"new", 2000, "k1")
	check("old secret in grace", KeyPrefix+"one", 2999, "k1")
	check("old secret after grace", KeyPrefix+"one", 3000, "")

	m.apply(state.TypeDeleteAPIKey, state.DeleteAPIKey{ID: "k1"})
	check("revoked", KeyPrefix+"new", 2000, "")

	// A restored state whose keys index happens to equal the cached one
	// is indexed again.
	s := m.m.Snapshot()
	s.APIKeys = map[string]*state.APIKey{"k3": {ID: "k3", Role: "admin", Hash: h.Hash(KeyPrefix + "three")}}
	m.m.Restore(s)
	check("restored", KeyPrefix+"three", 2000, "k3")
	check("gone with the restore", KeyPrefix+"two", 2000, "")

	used := keys.TakeUsed()
	if len(used) != 3 || used["k3"] != 2000 || keys.TakeUsed() != nil {
		t.Fatalf("used %v", used)
	}
}

func TestPrincipalRules(t *testing.T) {
	p := Principal{KeyID: "k", Role: RoleInference, Models: []string{"chat", "qwen*"}, Jurisdictions: []string{"EU", "CH"}}
	models := []struct {
		names []string
		ok    bool
	}{
		{[]string{"chat"}, true},
		{[]string{"Qwen2.5:7b"}, true},
		{[]string{"llama3", "chat"}, true},
		{[]string{"llama3"}, false},
		{nil, false},
	}
	for _, tc := range models {
		if got := p.AllowsModel(tc.names...); got != tc.ok {
			t.Errorf("AllowsModel(%v) = %v", tc.names, got)
		}
	}
	if !(Principal{}).AllowsModel("anything") {
		t.Error("a key without models may not use one")
	}
	narrow := []struct {
		name   string
		p      Principal
		asked  []string
		want   []string
		forbid bool
	}{
		{"the key's", p, nil, []string{"EU", "CH"}, false},
		{"narrowed", p, []string{"US", "CH"}, []string{"CH"}, false},
		{"outside", p, []string{"US"}, nil, true},
		{"no key rule", Principal{}, []string{"US"}, []string{"US"}, false},
	}
	for _, tc := range narrow {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.p.Narrow(tc.asked)
			if !reflect.DeepEqual(got, tc.want) || errors.Is(err, ErrJurisdictionForbidden) != tc.forbid {
				t.Fatalf("%v %v", got, err)
			}
		})
	}
}

func TestPrincipalHeader(t *testing.T) {
	p := Principal{KeyID: "key-1", Role: RoleInference, Models: []string{"ä*"}, Jurisdictions: []string{"EU"}, Limits: state.Limits{TokensPerDay: 5}}
	back, err := DecodePrincipal(EncodePrincipal(p))
	if err != nil || !reflect.DeepEqual(back, p) {
		t.Fatalf("%+v %v", back, err)
	}
	for _, bad := range []string{"", "!!", EncodePrincipal(Principal{KeyID: "k", Role: "root"}), EncodePrincipal(Principal{Role: RoleAdmin})} {
		if _, err := DecodePrincipal(bad); !errors.Is(err, ErrBadPrincipal) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// BenchmarkRequire measures what the authentication seam adds to a
// request: the middleware in front of an empty handler, with n keys in
// the replicated state, for an API key, the management token and a wrong
// key.
func BenchmarkRequire(b *testing.B) {
	for _, n := range []int{0, 100, 10000} {
		h, _ := NewHasher(clusterToken)
		m := newMachine(b)
		for i := range n {
			m.apply(state.TypePutAPIKey, state.PutAPIKey{Key: state.APIKey{ID: fmt.Sprintf("k%d", i), Role: state.RoleInference,
				Hash: h.Hash(fmt.Sprintf("%s%d", KeyPrefix, i))}})
		}
		a := New("admin-secret", NewStateKeys(m.m, h, nil))
		app := fiber.New()
		app.Get("/", a.Require(RoleInference), func(c *fiber.Ctx) error { return c.SendStatus(200) })
		bare := fiber.New()
		bare.Get("/", func(c *fiber.Ctx) error { return c.SendStatus(200) })
		for _, tc := range []struct{ name, secret string }{{"key", fmt.Sprintf("%s%d", KeyPrefix, n/2)}, {"token", "admin-secret"}, {"wrong", KeyPrefix + "x"}} {
			if n == 0 && tc.name == "key" {
				continue
			}
			b.Run(fmt.Sprintf("keys=%d/%s", n, tc.name), func(b *testing.B) {
				benchApp(b, app, tc.secret)
			})
		}
		if n == 0 {
			b.Run("no-auth", func(b *testing.B) { benchApp(b, bare, "") })
		}
	}
}

func benchApp(b *testing.B, app *fiber.App, secret string) {
	h := app.Handler()
	var rc fasthttp.RequestCtx
	want := 200
	if strings.HasSuffix(secret, "x") {
		want = 500 // no error handler: the refusal is fiber's default
	}
	b.ReportAllocs()
	for b.Loop() {
		rc.Request.Reset()
		rc.Response.Reset()
		rc.ResetUserValues() // as fasthttp's server does per request: no principal left over
		rc.Request.Header.SetMethod("GET")
		rc.Request.SetRequestURI("/")
		if secret != "" {
			rc.Request.Header.Set("Authorization", "Bearer "+secret)
		}
		h(&rc)
	}
	if got := rc.Response.StatusCode(); got != want {
		b.Fatalf("status %d, want %d", got, want)
	}
}
