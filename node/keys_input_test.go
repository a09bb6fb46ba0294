package node_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testnode"
)

// TestKeyAndAuditRoutesRefuseBadInput sends bad requests to every key and
// audit route: each gets a clear 4xx, and the keys stay as they were.
func TestKeyAndAuditRoutesRefuseBadInput(t *testing.T) {
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	n := testnode.Start(t, sim.URL(), member("n1"))
	url := n.URL()
	waitView(t, url, allReady(1))
	k := newKey(t, url, `{"name":"kept","models":["chat"]}`)
	keysNow := func() []byte {
		_, _, b := adminWith(t, "GET", url+"/admin/v1/keys", "", nil)
		return b
	}
	before := keysNow()
	long := strings.Repeat("n", 300)
	id := "/admin/v1/keys/" + k.ID
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
	}{
		{"create: empty body", "POST", "/admin/v1/keys", "", nil, 400},
		{"create: not JSON", "POST", "/admin/v1/keys", `{"name":`, nil, 400},
		{"create: two objects", "POST", "/admin/v1/keys", `{}{}`, nil, 400},
		{"create: unknown field", "POST", "/admin/v1/keys", `{"model":["x"]}`, nil, 400},
		{"create: form body", "POST", "/admin/v1/keys", `name=x`, map[string]string{"Content-Type": "text/plain"}, 415},
		{"create: unknown role", "POST", "/admin/v1/keys", `{"role":"root"}`, nil, 400},
		{"create: role of the wrong type", "POST", "/admin/v1/keys", `{"role":1}`, nil, 400},
		{"create: bad model pattern", "POST", "/admin/v1/keys", `{"models":["a["]}`, nil, 400},
		{"create: empty model", "POST", "/admin/v1/keys", `{"models":[" "]}`, nil, 400},
		{"create: bad jurisdiction", "POST", "/admin/v1/keys", `{"jurisdictions":["E U"]}`, nil, 400},
		{"create: empty jurisdiction", "POST", "/admin/v1/keys", `{"jurisdictions":["EU",""]}`, nil, 400},
		{"create: expiry not a duration", "POST", "/admin/v1/keys", `{"expires_in":"soon"}`, nil, 400},
		{"create: negative expiry", "POST", "/admin/v1/keys", `{"expires_in":-5}`, nil, 400},
		{"create: expiry too far", "POST", "/admin/v1/keys", `{"expires_in":"20000d"}`, nil, 400},
		{"create: negative limit", "POST", "/admin/v1/keys", `{"limits":{"concurrent":-1}}`, nil, 400},
		{"create: unknown limit", "POST", "/admin/v1/keys", `{"limits":{"per_hour":1}}`, nil, 400},
		{"create: empty label key", "POST", "/admin/v1/keys", `{"labels":{"":"x"}}`, nil, 400},
		{"create: long name", "POST", "/admin/v1/keys", `{"name":"` + long + `"}`, nil, 400},
		{"get: no such key", "GET", "/admin/v1/keys/key-none", "", nil, 404},
		{"patch: no such key", "PATCH", "/admin/v1/keys/key-none", `{"name":"x"}`, nil, 404},
		{"patch: nothing to change", "PATCH", id, `{}`, nil, 400},
		{"patch: unknown role", "PATCH", id, `{"role":"user"}`, nil, 400},
		{"patch: unknown field", "PATCH", id, `{"secret":"x"}`, nil, 400},
		{"patch: bad pattern", "PATCH", id, `{"models":["["]}`, nil, 400},
		{"delete: no such key", "DELETE", "/admin/v1/keys/key-none", "", nil, 404},
		{"rotate: no such key", "POST", "/admin/v1/keys/key-none/rotate", "", nil, 404},
		{"rotate: negative grace", "POST", id + "/rotate", `{"grace":"-1s"}`, nil, 400},
		{"rotate: grace too long", "POST", id + "/rotate", `{"grace":"40d"}`, nil, 400},
		{"rotate: grace of the wrong type", "POST", id + "/rotate", `{"grace":true}`, nil, 400},
		{"rotate: unknown field", "POST", id + "/rotate", `{"grace_period":"1h"}`, nil, 400},
		{"audit: bad since", "GET", "/admin/v1/audit?since=yesterday", "", nil, 400},
		{"audit: zero limit", "GET", "/admin/v1/audit?limit=0", "", nil, 400},
		{"audit: limit past the page bound", "GET", "/admin/v1/audit?limit=5000", "", nil, 400},
		{"audit: bad after", "GET", "/admin/v1/audit?after=x", "", nil, 400},
		{"keys: inference key", "GET", "/admin/v1/keys", "", map[string]string{"Authorization": "Bearer " + k.Secret}, 403},
		{"audit: no credential", "GET", "/admin/v1/audit", "", map[string]string{"Authorization": "Bearer "}, 401},
		{"verify: wrong credential", "GET", "/admin/v1/audit/verify", "", map[string]string{"Authorization": "Bearer sk-sovra-x"}, 401},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := adminWith(t, tc.method, url+tc.path, tc.body, tc.hdr)
			if code != tc.status {
				t.Fatalf("%d %s, want %d", code, body, tc.status)
			}
			if !bytes.Contains(body, []byte(`"message"`)) {
				t.Fatalf("no error message: %s", body)
			}
			if after := keysNow(); !bytes.Equal(after, before) {
				t.Fatalf("the keys changed:\n%s\n%s", before, after)
			}
		})
	}
	if code := modelsStatus(t, url, k.Secret); code != http.StatusOK {
		t.Fatalf("the key no longer works: %d", code)
	}
}
