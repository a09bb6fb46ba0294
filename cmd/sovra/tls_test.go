package main

import (
	"bytes"
	"errors"
	"github.com/sovra/sovra/cmd/sovra/cli"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sovra/sovra/internal/pki"
)

// runRoot runs the sovra command line with args and returns its output.
func runRoot(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot(cli.StdIO())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestTLSCommands makes a CA and a node certificate with `sovra tls`, and
// loads them as a node configured with --cluster-ca/-cert/-key would.
func TestTLSCommands(t *testing.T) {
	dir := t.TempDir()
	caDir, nodeDir := filepath.Join(dir, "ca"), filepath.Join(dir, "n1")
	if out, err := runRoot(t, "tls", "ca", "--out", caDir); err != nil || !strings.Contains(out, "sovra tls cert") {
		t.Fatalf("tls ca: %v\n%s", err, out)
	}
	out, err := runRoot(t, "tls", "cert", "--ca", caDir, "--node-id", "n1", "--out", nodeDir, "--host", "127.0.0.1,gpu-1.example")
	if err != nil || !strings.Contains(out, "--cluster-cert "+filepath.Join(nodeDir, pki.CertFile)) {
		t.Fatalf("tls cert: %v\n%s", err, out)
	}
	creds, err := pki.LoadFiles("n1", filepath.Join(nodeDir, pki.CAFile), filepath.Join(nodeDir, pki.CertFile), filepath.Join(nodeDir, pki.CertKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := pki.ParseCert(pki.EncodeCert(creds.Cert.Certificate[0]))
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].IsLoopback() || len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "gpu-1.example" {
		t.Errorf("hosts: %v %v", leaf.IPAddresses, leaf.DNSNames)
	}
	for _, f := range []string{filepath.Join(caDir, pki.CAKeyFile), filepath.Join(nodeDir, pki.CertKeyFile)} {
		if info, err := os.Stat(f); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", f, info, err)
		}
	}
	if _, err := os.Stat(filepath.Join(nodeDir, pki.CAKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the CA key was copied to the node: %v", err)
	}
}

func TestTLSCommandsRefuse(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if _, err := runRoot(t, "tls", "ca", "--out", caDir); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(caDir, pki.CAKeyFile))
	cases := []struct {
		name string
		args []string
	}{
		{"a CA over a CA", []string{"tls", "ca", "--out", caDir}},
		{"a bad node id", []string{"tls", "cert", "--ca", caDir, "--node-id", "bad id", "--out", filepath.Join(dir, "x")}},
		{"no CA there", []string{"tls", "cert", "--ca", filepath.Join(dir, "none"), "--node-id", "n1", "--out", filepath.Join(dir, "y")}},
		{"no node id", []string{"tls", "cert", "--ca", caDir, "--out", filepath.Join(dir, "z")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if out, err := runRoot(t, tc.args...); err == nil {
				t.Fatalf("accepted: %s", out)
			}
		})
	}
	if after, _ := os.ReadFile(filepath.Join(caDir, pki.CAKeyFile)); !bytes.Equal(before, after) {
		t.Fatal("the CA key was overwritten")
	}
}
