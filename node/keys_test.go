package node_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node"
)

// This file tests API keys end to end, through real nodes over simulated
// Ollamas: keys of each role on every node, refusals in each API
// family's format, revocation and rotation as every node sees them, and
// a key's jurisdictions as the Ollamas' own logs see them.

// keyView is a key as the admin API shows it.
type keyView = client.Key

func newKey(t *testing.T, url, body string) keyView {
	t.Helper()
	var k keyView
	if code := admin(t, "POST", url+"/admin/v1/keys", body, &k); code != http.StatusCreated || k.Secret == "" {
		t.Fatalf("create key %s: %d %+v", body, code, k)
	}
	return k
}

// withKey does a request with secret as its bearer token (none when
// empty) and further headers.
func withKey(t *testing.T, method, url, body, secret string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

// modelsStatus is the status of GET /v1/models with secret on a node:
// the cheapest inference route, to see whether a node takes a key.
func modelsStatus(t *testing.T, url, secret string) int {
	code, _, _ := withKey(t, "GET", url+"/v1/models", "", secret, nil)
	return code
}

// waitKeyEverywhere waits until every node answers secret with want.
func waitKeyEverywhere(t *testing.T, c *simCluster, secret string, want int) {
	t.Helper()
	for _, id := range c.ids {
		testwait.For(t, 10*time.Second, fmt.Sprintf("%s answers the key %d", id, want), func() bool {
			return modelsStatus(t, c.url(id), secret) == want
		})
	}
}

// family is one API family's chat route and the shape of its errors.
type family struct {
	name, path, body string
	keyHeader        string // where its clients send the key ("" for Authorization)
	errOK            func(body []byte) bool
}

func chatBody(model string) string {
	return `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}],"stream":false,"max_tokens":4}`
}

var families = []family{
	{name: "openai", path: "/v1/chat/completions", body: chatBody("%s"), errOK: func(b []byte) bool {
		var e struct {
			Error struct{ Message, Type, Code string } `json:"error"`
		}
		return json.Unmarshal(b, &e) == nil && e.Error.Message != "" && e.Error.Code != ""
	}},
	{name: "anthropic", path: "/v1/messages", body: chatBody("%s"), keyHeader: "x-api-key", errOK: func(b []byte) bool {
		var e struct {
			Type  string                         `json:"type"`
			Error struct{ Type, Message string } `json:"error"`
		}
		return json.Unmarshal(b, &e) == nil && e.Type == "error" && e.Error.Type != "" && e.Error.Message != ""
	}},
	{name: "ollama", path: "/api/chat", body: chatBody("%s"), errOK: func(b []byte) bool {
		var e struct {
			Error string `json:"error"`
		}
		return json.Unmarshal(b, &e) == nil && e.Error != ""
	}},
}

// chat sends a chat of model to a node in the family's format with secret.
func (f family) chat(t *testing.T, url, model, secret string, hdr map[string]string) (int, http.Header, []byte) {
	t.Helper()
	h := map[string]string{}
	for k, v := range hdr {
		h[k] = v
	}
	bearer := secret
	if f.keyHeader != "" && secret != "" {
		h[f.keyHeader], bearer = secret, ""
	}
	return withKey(t, "POST", url+f.path, fmt.Sprintf(f.body, model), bearer, h)
}

func keyTestCluster(t *testing.T) *simCluster {
	c := startSimCluster(t, []simNode{
		{id: "eu1", labels: "jurisdiction=EU"}, {id: "eu2", labels: "jurisdiction=EU"}, {id: "us", labels: "jurisdiction=US"},
	}, func(cfg *node.Config) {
		cfg.Audit.Flush, cfg.Audit.KeyUseReport = 50*time.Millisecond, 100*time.Millisecond
	})
	c.deploy(t, `{"name":"chat","model":"`+fastModel+`","replicas":3}`, "eu1", "eu2", "us")
	return c
}

func TestAPIKeysEndToEnd(t *testing.T) {
	c := keyTestCluster(t)
	entry := c.url(c.ids[0])
	adminKey := newKey(t, entry, `{"name":"ops","role":"admin","labels":{"team":"platform"}}`)
	user := newKey(t, entry, `{"name":"ci","models":["chat"],"limits":{"requests_per_minute":60,"tokens_per_day":100000}}`)
	eu := newKey(t, entry, `{"name":"eu","jurisdictions":["eu"]}`)
	for _, k := range []keyView{adminKey, user, eu} {
		waitKeyEverywhere(t, c, k.Secret, http.StatusOK)
	}

	t.Run("each role on every node", func(t *testing.T) { rolesOnEveryNode(t, c, adminKey, user) })
	t.Run("refusals per family", func(t *testing.T) { refusalsPerFamily(t, c, user, eu) })
	t.Run("EU key never reaches the US Ollama", func(t *testing.T) { euKeyStaysInEU(t, c, eu) })
	t.Run("last use is reported", func(t *testing.T) {
		testwait.For(t, 10*time.Second, "last_used of the used key", func() bool {
			var k keyView
			return admin(t, "GET", entry+"/admin/v1/keys/"+user.ID, "", &k) == http.StatusOK && k.LastUsed > 0
		})
	})
	t.Run("rotation grace", func(t *testing.T) { rotationGrace(t, c) })
	t.Run("revocation as fast as replication", func(t *testing.T) { revocationTiming(t, c, 20) })
	t.Run("audit", func(t *testing.T) { auditChain(t, c, adminKey, []string{adminKey.Secret, user.Secret, eu.Secret}) })
}

func rolesOnEveryNode(t *testing.T, c *simCluster, adminKey, user keyView) {
	for _, id := range c.ids {
		url := c.url(id)
		for _, f := range families {
			for _, k := range []keyView{adminKey, user} {
				if code, _, body := f.chat(t, url, "chat", k.Secret, nil); code != http.StatusOK {
					t.Errorf("%s %s %s key: %d %s", id, f.name, k.Role, code, body)
				}
			}
		}
		if code, _, _ := withKey(t, "GET", url+"/admin/v1/keys", "", adminKey.Secret, nil); code != http.StatusOK {
			t.Errorf("%s: admin key on the admin API: %d", id, code)
		}
		code, _, body := withKey(t, "GET", url+"/admin/v1/keys", "", user.Secret, nil)
		if code != http.StatusForbidden || !families[0].errOK(body) {
			t.Errorf("%s: inference key on the admin API: %d %s", id, code, body)
		}
		if strings.Contains(string(body), user.Secret) {
			t.Errorf("the refusal shows the secret")
		}
	}
}

func refusalsPerFamily(t *testing.T, c *simCluster, user, eu keyView) {
	cases := []struct {
		name, secret, model string
		hdr                 map[string]string
		status              int
	}{
		{"no key", "", "chat", nil, http.StatusUnauthorized},
		{"wrong key", user.Secret + "0", "chat", nil, http.StatusUnauthorized},
		{"management-like guess", "sk-sovra-00000000", "chat", nil, http.StatusUnauthorized},
		{"model not allowed", user.Secret, "other-model", nil, http.StatusForbidden},
		{"model tag of another deployment", user.Secret, "qwen2.5:0.5b", nil, http.StatusForbidden},
		{"model tag of its deployment", user.Secret, fastModel, nil, http.StatusOK},
		{"jurisdiction outside the key's", eu.Secret, "chat", map[string]string{"Sovra-Jurisdiction": "US"}, http.StatusForbidden},
		{"jurisdiction within the key's", eu.Secret, "chat", map[string]string{"Sovra-Jurisdiction": "US,EU"}, http.StatusOK},
	}
	for _, f := range families {
		for _, tc := range cases {
			t.Run(f.name+"/"+tc.name, func(t *testing.T) {
				before := total(c.served(fastModel))
				code, _, body := f.chat(t, c.url("us"), tc.model, tc.secret, tc.hdr)
				if code != tc.status {
					t.Fatalf("%d %s, want %d", code, body, tc.status)
				}
				if code == http.StatusOK {
					return
				}
				if !f.errOK(body) {
					t.Fatalf("error not in %s's format: %s", f.name, body)
				}
				if after := total(c.served(fastModel)); after != before {
					t.Fatalf("a refused request reached an Ollama")
				}
			})
		}
	}
}

func euKeyStaysInEU(t *testing.T, c *simCluster, eu keyView) {
	before := c.served(fastModel)
	const perNode = 6
	n := 0
	for _, id := range c.ids {
		for i := range perNode {
			f := families[i%len(families)]
			code, hdr, body := f.chat(t, c.url(id), "chat", eu.Secret, nil)
			if code != http.StatusOK {
				t.Fatalf("via %s (%s): %d %s", id, f.name, code, body)
			}
			if on := hdr.Get("Sovra-Node"); on != "eu1" && on != "eu2" {
				t.Fatalf("via %s served by %q", id, on)
			}
			n++
		}
	}
	var after map[string]int
	testwait.Until(t, 5*time.Second, func() bool {
		after = c.served(fastModel)
		return after["eu1"]+after["eu2"]-before["eu1"]-before["eu2"] >= n
	}, func() string {
		return fmt.Sprintf("the EU simulators logged %v, want %d more than %v", after, n, before)
	})
	if d := after["us"] - before["us"]; d != 0 {
		t.Fatalf("the US Ollama logged %d of the EU key's chats", d)
	}
}

func rotationGrace(t *testing.T, c *simCluster) {
	cases := []struct {
		name  string
		grace string
		dur   time.Duration
	}{
		{"with a grace period", `{"grace":"1500ms"}`, 1500 * time.Millisecond},
		{"without", `{"grace":0}`, 0},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url := c.url(c.ids[i%len(c.ids)])
			k := newKey(t, url, `{"name":"rotated"}`)
			waitKeyEverywhere(t, c, k.Secret, http.StatusOK)
			var r keyView
			start := time.Now()
			if code := admin(t, "POST", url+"/admin/v1/keys/"+k.ID+"/rotate", tc.grace, &r); code != http.StatusOK || r.Secret == "" || r.Secret == k.Secret {
				t.Fatalf("rotate: %d %+v", code, r)
			}
			waitKeyEverywhere(t, c, r.Secret, http.StatusOK)
			if tc.dur > 0 {
				for _, id := range c.ids {
					if time.Since(start) < tc.dur/2 {
						if code := modelsStatus(t, c.url(id), k.Secret); code != http.StatusOK {
							t.Fatalf("%s refused the old secret within its grace: %d", id, code)
						}
					}
				}
			}
			waitKeyEverywhere(t, c, k.Secret, http.StatusUnauthorized)
			if took := time.Since(start); took < tc.dur {
				t.Fatalf("the old secret was refused after %v, before its grace of %v ended", took, tc.dur)
			}
		})
	}
}

// revocationTiming revokes n keys, each through another node, and checks
// that every node refuses a key as soon as it has applied its revocation:
// once its applied index reaches the leader's after the DELETE returned,
// whatever the time that took. It reports how long after the DELETE
// every node refused the key (README's figures).
func revocationTiming(t *testing.T, c *simCluster, n int) {
	var took []time.Duration
	for i := range n {
		k := newKey(t, c.url(c.ids[i%len(c.ids)]), `{"name":"revoked"}`)
		waitKeyEverywhere(t, c, k.Secret, http.StatusOK)
		if code := admin(t, "DELETE", c.url(c.ids[(i+1)%len(c.ids)])+"/admin/v1/keys/"+k.ID, "", nil); code != http.StatusOK {
			t.Fatalf("revoke: %d", code)
		}
		start := time.Now()
		// The leader answered the write once it had applied it.
		var v clusterView
		admin(t, "GET", c.url(c.ids[0])+"/admin/v1/cluster", "", &v)
		var lv clusterView
		if code := admin(t, "GET", c.url(v.Leader)+"/admin/v1/cluster", "", &lv); code != http.StatusOK || lv.Self != v.Leader {
			t.Fatalf("the leader's view: %d %+v", code, lv)
		}
		for _, id := range c.ids {
			testwait.Until(t, 10*time.Second, func() bool {
				var nv clusterView
				return admin(t, "GET", c.url(id)+"/admin/v1/cluster", "", &nv) == http.StatusOK && nv.AppliedIndex >= lv.AppliedIndex
			}, func() string { return fmt.Sprintf("%s to apply index %d", id, lv.AppliedIndex) })
			if code := modelsStatus(t, c.url(id), k.Secret); code != http.StatusUnauthorized {
				t.Errorf("%s applied the revocation (index %d) but still takes the key: %d", id, lv.AppliedIndex, code)
			}
		}
		worst := time.Since(start)
		took = append(took, worst)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("revocation refused on all %d nodes after the DELETE returned: p50 %v, max %v (%d revocations)",
		len(c.ids), took[len(took)/2], took[len(took)-1], len(took))
}

// auditEntry is an audit entry as the admin API shows it.
type auditEntry struct {
	Seq                                          uint64
	Actor, Action, Target, Source, Outcome, Hash string
}

func auditOf(t *testing.T, url, query string) []auditEntry {
	t.Helper()
	var out struct{ Entries []auditEntry }
	if code := admin(t, "GET", url+"/admin/v1/audit?"+query, "", &out); code != http.StatusOK {
		t.Fatalf("audit %s: %d", query, code)
	}
	return out.Entries
}

type verifyView = client.AuditVerification

func auditChain(t *testing.T, c *simCluster, adminKey keyView, secrets []string) {
	url := c.url(c.ids[1])
	// An admin key's actions name it; refusals are recorded in batches.
	code, _, body := withKey(t, "POST", url+"/admin/v1/keys", `{"name":"by-key"}`, adminKey.Secret, nil)
	if code != http.StatusCreated {
		t.Fatalf("create with the admin key: %d %s", code, body)
	}
	var made keyView
	_ = json.Unmarshal(body, &made)
	secrets = append(secrets, made.Secret)
	for range 3 {
		withKey(t, "GET", url+"/admin/v1/nodes", "", "sk-sovra-wrong", nil)
	}
	testwait.For(t, 10*time.Second, "three failed authentications in the audit log", func() bool {
		return len(auditOf(t, url, "action=auth-failed")) >= 3
	})
	byKey := auditOf(t, url, "actor="+adminKey.ID)
	if len(byKey) != 1 || byKey[0].Action != "put-api-key" || byKey[0].Target != made.ID || byKey[0].Outcome != "ok" || byKey[0].Source == "" {
		t.Fatalf("the admin key's actions: %+v", byKey)
	}
	revoked := auditOf(t, url, "action=delete-api-key&limit=5")
	if len(revoked) != 5 || revoked[0].Actor != "admin" {
		t.Fatalf("revocations: %+v", revoked)
	}
	var v verifyView
	if admin(t, "GET", url+"/admin/v1/audit/verify", "", &v); !v.OK || v.Broken != nil {
		t.Fatalf("verify: %+v", v)
	}

	// No secret in the audit log or a snapshot, only hashes.
	var snap json.RawMessage
	admin(t, "GET", url+"/admin/v1/snapshot", "", &snap)
	_, _, all := adminWith(t, "GET", url+"/admin/v1/audit?limit=1000", "", nil)
	for _, s := range secrets {
		if strings.Contains(string(snap), s) || strings.Contains(string(all), s) {
			t.Fatal("a key's secret is in the snapshot or the audit log")
		}
	}

	// An entry edited in a restored snapshot is found.
	var doc map[string]any
	if err := json.Unmarshal(snap, &doc); err != nil {
		t.Fatal(err)
	}
	entries := doc["state"].(map[string]any)["audit"].([]any)
	victim := entries[len(entries)/2].(map[string]any)
	victim["actor"] = "mallory"
	edited, _ := json.Marshal(doc)
	if code, _, body := adminWith(t, "POST", url+"/admin/v1/snapshot?force=true", string(edited), nil); code != http.StatusOK {
		t.Fatalf("restore: %d %s", code, body)
	}
	admin(t, "GET", url+"/admin/v1/audit/verify", "", &v)
	if v.OK || v.Broken == nil || v.Broken.Seq != uint64(victim["seq"].(float64)) {
		t.Fatalf("verify after an edit of entry %v: %+v", victim["seq"], v)
	}
	restores := auditOf(t, url, "action=restore-snapshot")
	if len(restores) != 1 || restores[0].Outcome != "ok" || !slices.Contains([]string{"admin"}, restores[0].Actor) {
		t.Fatalf("restore record: %+v", restores)
	}
}
