package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/sovra/sovra/node"
	"github.com/sovra/sovra/node/auth"
)

// registerCredentials adds the flags of the operators' credential and of
// the browser checks.
func (s *settings) registerCredentials(fs *pflag.FlagSet, def node.Config) {
	fs.StringVar(&s.node.AdminToken, "admin-token", def.AdminToken, "management token operators send as a bearer token on /admin/v1 and the inference routes (visible in ps: prefer --admin-token-file or SOVRA_ADMIN_TOKEN; default: made once in <data-dir>/admin-token)")
	fs.StringVar(&s.adminTokenFile, "admin-token-file", "", "file holding the management token")
	fs.StringVar(&s.node.Auth, "auth", def.Auth, "on, or off to admit requests without a credential on /v1 and /api (a trusted network only; admin routes still need the management token)")
	fs.StringSliceVar(&s.node.AllowedOrigins, "allowed-origins", def.AllowedOrigins, `browser origins, beyond loopback ones, whose pages may call the API, e.g. https://ui.example.com,https://*.example.com ("*": any)`)
}

// warnSecretArgs notes the secrets given on the command line, where every
// local user sees them in ps. It runs before the environment and the
// config file are applied, while Changed still means the command line.
func (s *settings) warnSecretArgs(fs *pflag.FlagSet) {
	for _, name := range slices.Sorted(maps.Keys(secretFlags)) {
		if fs.Changed(name) {
			s.warnings = append(s.warnings, fmt.Sprintf("--%s on the command line is visible to every user of this host (ps, /proc): use --%s-file or %s instead",
				name, name, secretFlags[name]))
		}
	}
}

// readTokenFiles reads --admin-token-file and --cluster-token-file.
func (s *settings) readTokenFiles() error {
	files := []struct {
		flag, path string
		dst        *string
	}{
		{"admin-token", s.adminTokenFile, &s.node.AdminToken},
		{"cluster-token", s.clusterTokenFile, &s.node.Cluster.Token},
	}
	for _, f := range files {
		if f.path == "" {
			continue
		}
		if *f.dst != "" {
			return fmt.Errorf("--%s and --%s-file exclude each other", f.flag, f.flag)
		}
		tok, loose, err := auth.ReadTokenFile(f.path)
		if err != nil {
			return fmt.Errorf("--%s-file: %w", f.flag, err)
		}
		if loose {
			s.warnings = append(s.warnings, fmt.Sprintf("--%s-file %s is readable by other users: chmod 600 it", f.flag, f.path))
		}
		*f.dst = tok
	}
	return nil
}

// shown is how a setting's value may appear in a message: secrets never.
func shown(flag, value string) string {
	if _, ok := secretFlags[flag]; ok {
		return "<redacted>"
	}
	return value
}

// scrubArgs returns args with the values of secret flags replaced, in
// both the "--flag value" and the "--flag=value" forms.
func scrubArgs(args []string) []string {
	out := slices.Clone(args)
	for i := 0; i < len(out); i++ {
		name, _, hasValue := strings.Cut(strings.TrimLeft(out[i], "-"), "=")
		if !strings.HasPrefix(out[i], "--") {
			continue
		}
		if _, ok := secretFlags[name]; !ok {
			continue
		}
		if hasValue {
			out[i] = "--" + name + "=<redacted>"
		} else if i+1 < len(out) {
			out[i+1] = "<redacted>"
			i++
		}
	}
	return out
}
