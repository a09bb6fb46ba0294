package main

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// exampleConfig is the configuration that deploy/ ships.
const exampleConfig = "../../deploy/sovra.yaml"

// offSetting is a setting the example leaves off: "# key: value".
var offSetting = regexp.MustCompile(`(?m)^# ?([a-z][a-z0-9-]*):( .*)?$`)

// exampleSecrets points the token files at test files: the example names
// none, and the systemd unit gives them through the environment.
func exampleSecrets(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"admin-token", "cluster-token"} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("0123456789abcdef-"+name+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv(map[string]string{"admin-token": "SOVRA_ADMIN_TOKEN_FILE", "cluster-token": "SOVRA_CLUSTER_TOKEN_FILE"}[name], path)
	}
}

// TestExampleConfigParses loads deploy/sovra.yaml through the settings
// loader of `serve`: every key must be a flag, every value valid.
func TestExampleConfigParses(t *testing.T) {
	exampleSecrets(t)
	s, err := parseServe(t, "--config", exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	c, n := s.node.Cluster, s.node
	checks := []struct {
		name string
		ok   bool
	}{
		{"node", n.NodeID == "gpu-host-1" && s.logFormat == "json" && n.DataDir == "/var/lib/sovra"},
		{"cluster", c.RaftAddr == "10.0.0.1:8300" && c.BootstrapExpect == 3 && c.MaxVoters == 3 &&
			slices.Equal(c.Join, []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"})},
		{"labels", c.Labels["jurisdiction"] == "EU" && c.Labels["country"] == "FR"},
		{"secrets from the files", n.AdminToken == "0123456789abcdef-admin-token" && c.Token == "0123456789abcdef-cluster-token"},
		{"routing", n.Routing.Policy == "ttf" && n.Routing.Slots == 4 && n.Routing.LoadInterval == 20*time.Millisecond},
		{"limits", n.MaxBodyBytes == 16<<20 && n.Limits.MaxConnsPerIP == 256 && n.Limits.MaxJSONDepth == 64},
		{"TLS off", n.TLSCertFile == "" && c.CAFile == ""},
	}
	for _, ch := range checks {
		if !ch.ok {
			t.Errorf("%s settings of the example not applied: %+v", ch.name, s.node)
		}
	}
}

// TestExampleConfigSettingsLeftOff turns on every setting the example
// leaves off ("# key: value") and loads the result: they too must be
// flags with valid values.
func TestExampleConfigSettingsLeftOff(t *testing.T) {
	b, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	off := offSetting.FindAllStringSubmatch(string(b), -1)
	if len(off) < 8 {
		t.Fatalf("only %d settings left off in %s; the pattern no longer finds them?", len(off), exampleConfig)
	}
	on := offSetting.ReplaceAllString(string(b), "$1:$2")
	path := filepath.Join(t.TempDir(), "sovra.yaml")
	if err := os.WriteFile(path, []byte(on), 0o600); err != nil {
		t.Fatal(err)
	}
	exampleSecrets(t)
	s, err := parseServe(t, "--config", path)
	if err != nil {
		t.Fatalf("%v\n(turned on: %q)", err, off)
	}
	if s.node.TLSCertFile == "" || s.node.Cluster.CAFile == "" || s.node.Cluster.GPUs == "" || len(s.node.AllowedOrigins) == 0 {
		t.Errorf("settings left off were not turned on: %+v", s.node)
	}
}

// TestExampleConfigCatchesTypos: a misspelt key in the example, on or
// left off, fails the tests above.
func TestExampleConfigCatchesTypos(t *testing.T) {
	b, err := os.ReadFile(exampleConfig)
	if err != nil {
		t.Fatal(err)
	}
	exampleSecrets(t)
	for _, tc := range []struct{ name, old, new string }{
		{"setting on", "\nmax-voters: 3\n", "\nmax-voter: 3\n"},
		{"setting left off", "# tls-key: ", "# tls-keys: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(b), tc.old) {
				t.Fatalf("the example lacks %q", tc.old)
			}
			text := offSetting.ReplaceAllString(strings.Replace(string(b), tc.old, tc.new, 1), "$1:$2")
			path := filepath.Join(t.TempDir(), "sovra.yaml")
			if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := parseServe(t, "--config", path); err == nil {
				t.Fatal("a misspelt key was accepted")
			}
		})
	}
}
