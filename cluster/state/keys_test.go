package state

import (
	"reflect"
	"strings"
	"testing"
)

func testKey(id string) APIKey {
	return APIKey{ID: id, Name: "ci", Role: RoleInference, Hash: "hash-" + id, Prefix: "sk-sovra-" + id,
		Models: []string{"chat", "qwen*"}, Jurisdictions: []string{"EU"}, Limits: Limits{RequestsPerMinute: 60, TokensPerMonth: 1e9},
		Labels: map[string]string{"team": "search"}, Expires: 5000, Created: 1000}
}

func keysApplier(t *testing.T) *applier {
	a := newApplier(t)
	a.ok(TypePutAPIKey, PutAPIKey{Key: testKey("k1")})
	return a
}

func TestPutAPIKey(t *testing.T) {
	mod := func(f func(*APIKey)) APIKey { k := testKey("k2"); f(&k); return k }
	cases := []struct {
		name string
		key  APIKey
		code string
	}{
		{"new key", testKey("k2"), ""},
		{"admin role", mod(func(k *APIKey) { k.Role = RoleAdmin }), ""},
		{"id taken", testKey("k1"), "exists"},
		{"secret taken", mod(func(k *APIKey) { k.Hash = "hash-k1" }), "exists"},
		{"no id", mod(func(k *APIKey) { k.ID = "" }), "invalid"},
		{"unknown role", mod(func(k *APIKey) { k.Role = "user" }), "invalid"},
		{"no hash", mod(func(k *APIKey) { k.Hash = "" }), "invalid"},
		{"bad pattern", mod(func(k *APIKey) { k.Models = []string{"a["} }), "invalid"},
		{"negative limit", mod(func(k *APIKey) { k.Limits.Concurrent = -1 }), "invalid"},
		{"empty label key", mod(func(k *APIKey) { k.Labels = map[string]string{"": "x"} }), "invalid"},
		{"long name", mod(func(k *APIKey) { k.Name = strings.Repeat("n", 300) }), "invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := keysApplier(t)
			before := withoutIndex(t, a.s)
			out := a.do(TypePutAPIKey, PutAPIKey{Key: tc.key})
			wantErr(t, out, tc.code)
			if tc.code != "" {
				unchangedBut(t, before, a.s)
				return
			}
			k := a.s.APIKeys[tc.key.ID]
			if k.CreatedIndex != out.Index || a.s.KeysIndex != out.Index || k.Hash != tc.key.Hash {
				t.Fatalf("stored %+v at %d", k, out.Index)
			}
			v := decodeValue[KeyView](t, out)
			if !reflect.DeepEqual(v, k.View()) || strings.Contains(string(out.Value), "hash") {
				t.Fatalf("outcome %s", out.Value)
			}
		})
	}
}

func TestUpdateAPIKey(t *testing.T) {
	name, role, bad := "renamed", RoleAdmin, "root"
	models, labels, exp := []string{}, map[string]string{"team": "x"}, int64(9000)
	cases := []struct {
		name  string
		cmd   UpdateAPIKey
		code  string
		check func(*APIKey) bool
	}{
		{"name", UpdateAPIKey{ID: "k1", Name: &name, Time: 7}, "", func(k *APIKey) bool { return k.Name == name && k.Role == RoleInference && k.Modified == 7 }},
		{"role", UpdateAPIKey{ID: "k1", Role: &role}, "", func(k *APIKey) bool { return k.Role == RoleAdmin && len(k.Models) == 2 }},
		{"all models", UpdateAPIKey{ID: "k1", Models: &models}, "", func(k *APIKey) bool { return len(k.Models) == 0 }},
		{"labels and expiry", UpdateAPIKey{ID: "k1", Labels: &labels, Expires: &exp}, "", func(k *APIKey) bool { return k.Labels["team"] == "x" && k.Expires == exp }},
		{"limits", UpdateAPIKey{ID: "k1", Limits: &Limits{Concurrent: 4}}, "", func(k *APIKey) bool { return k.Limits == Limits{Concurrent: 4} }},
		{"bad role", UpdateAPIKey{ID: "k1", Role: &bad}, "invalid", nil},
		{"missing key", UpdateAPIKey{ID: "k9", Name: &name}, "not_found", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := keysApplier(t)
			before := withoutIndex(t, a.s)
			out := a.do(TypeUpdateAPIKey, tc.cmd)
			wantErr(t, out, tc.code)
			if tc.code != "" {
				unchangedBut(t, before, a.s)
				return
			}
			if k := a.s.APIKeys["k1"]; !tc.check(k) || k.Hash != "hash-k1" || k.ModifiedIndex != out.Index {
				t.Fatalf("key %+v", k)
			}
		})
	}
}

func TestRotateAPIKey(t *testing.T) {
	cases := []struct {
		name     string
		cmd      RotateAPIKey
		code     string
		wantPrev string
	}{
		{"with grace", RotateAPIKey{ID: "k1", Hash: "h-new", Prefix: "sk-sovra-new", GraceUntil: 2000, Time: 1500}, "", "hash-k1"},
		{"without grace", RotateAPIKey{ID: "k1", Hash: "h-new", Time: 1500}, "", ""},
		{"grace already over", RotateAPIKey{ID: "k1", Hash: "h-new", GraceUntil: 1000, Time: 1500}, "", ""},
		{"same secret", RotateAPIKey{ID: "k1", Hash: "hash-k1", Time: 1500}, "exists", ""},
		{"no hash", RotateAPIKey{ID: "k1", Time: 1500}, "invalid", ""},
		{"missing key", RotateAPIKey{ID: "k9", Hash: "h-new"}, "not_found", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := keysApplier(t)
			before := withoutIndex(t, a.s)
			out := a.do(TypeRotateAPIKey, tc.cmd)
			wantErr(t, out, tc.code)
			if tc.code != "" {
				unchangedBut(t, before, a.s)
				return
			}
			k := a.s.APIKeys["k1"]
			if k.Hash != tc.cmd.Hash || k.PrevHash != tc.wantPrev || k.Rotated != tc.cmd.Time || a.s.KeysIndex != out.Index {
				t.Fatalf("key %+v", k)
			}
			// A second rotation ends the first one's grace.
			a.ok(TypeRotateAPIKey, RotateAPIKey{ID: "k1", Hash: "h-newer", GraceUntil: 3000, Time: 1600})
			if k := a.s.APIKeys["k1"]; k.PrevHash != "h-new" {
				t.Fatalf("after a second rotation %+v", k)
			}
		})
	}
}

func TestDeleteAndTouchAPIKeys(t *testing.T) {
	a := keysApplier(t)
	a.ok(TypePutAPIKey, PutAPIKey{Key: testKey("k2")})
	a.ok(TypeTouchAPIKeys, TouchAPIKeys{Times: map[string]int64{"k1": 50, "gone": 60}})
	a.ok(TypeTouchAPIKeys, TouchAPIKeys{Times: map[string]int64{"k1": 40}})
	if k := a.s.APIKeys["k1"]; k.LastUsed != 50 {
		t.Fatalf("last used %d, want the latest 50", k.LastUsed)
	}
	keysAt := a.s.KeysIndex
	out := a.ok(TypeDeleteAPIKey, DeleteAPIKey{ID: "k1"})
	if _, ok := a.s.APIKeys["k1"]; ok || a.s.KeysIndex != out.Index || keysAt == out.Index {
		t.Fatalf("key still there or keys index %d", a.s.KeysIndex)
	}
	wantErr(t, a.do(TypeDeleteAPIKey, DeleteAPIKey{ID: "k1"}), "not_found")
	if got := a.s.KeyList(); len(got) != 1 || got[0].ID != "k2" {
		t.Fatalf("keys %v", got)
	}
}

func TestKeyViewHidesHashes(t *testing.T) {
	k := testKey("k1")
	k.PrevHash, k.PrevPrefix, k.PrevExpires = "old-hash", "sk-sovra-old", 9
	v := k.View()
	if v.PrevPrefix != "sk-sovra-old" || v.Prefix != k.Prefix {
		t.Fatalf("view %+v", v)
	}
	if got := reflect.TypeFor[KeyView](); hasField(got, "Hash") || hasField(got, "PrevHash") {
		t.Fatal("KeyView has a hash field")
	}
}

func hasField(t reflect.Type, name string) bool {
	_, ok := t.FieldByName(name)
	return ok
}
