package deploy_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// maxExposure is the highest overall exposure systemd-analyze security
// may give sovra.service, in tenths (the shipped unit scores 1.4, "OK").
const maxExposure = 20

// The unit's ExecStart binary, replaced in test copies by a built sovra
// (systemd-analyze verify wants an executable there).
const unitBinary = "/usr/local/bin/sovra"

func TestSystemdUnit(t *testing.T) {
	analyze := tool(t, "systemd-analyze", "systemd")
	flags := serveFlags(t)
	sandbox := "NoNewPrivileges=yes\nCapabilityBoundingSet=\nAmbientCapabilities=\nProtectSystem=strict\n"
	cases := []checkCase{
		{name: "as shipped"},
		{name: "unknown directive", edits: []edit{{"sovra.service", "LockPersonality=yes", "LockPersonality=yes\nProtectEverything=yes"}},
			want: "ProtectEverything"},
		{name: "directive in a drop-in misspelt", edits: []edit{{"sovra.service.d/ollama.conf", "After=ollama.service", "Afterwards=ollama.service"}},
			want: "Afterwards"},
		{name: "binary missing", edits: []edit{{"sovra.service", "ExecStart=" + unitBinary + " ", "ExecStart=" + unitBinary + "-old "}},
			want: "is not executable"},
		{name: "sandbox weakened", edits: []edit{{"sovra.service", sandbox, ""}, {"sovra.service", "SystemCallFilter=@system-service\n", ""}},
			want: "exposure"},
		{name: "token on the command line", edits: []edit{{"sovra.service", "--config /etc/sovra/sovra.yaml", "--config /etc/sovra/sovra.yaml --admin-token=0123456789abcdef"}},
			want: "--admin-token gives a secret on the command line"},
		{name: "token in the environment", edits: []edit{{"sovra.service", "Environment=SOVRA_CLUSTER_TOKEN_FILE=%d/cluster-token", "Environment=SOVRA_CLUSTER_TOKEN=0123456789abcdef"}},
			want: "SOVRA_CLUSTER_TOKEN gives a secret in the environment"},
		{name: "token file not a credential", edits: []edit{{"sovra.service", "LoadCredential=admin-token:/etc/sovra/admin-token\n", ""}},
			want: "SOVRA_ADMIN_TOKEN_FILE=%d/admin-token but no LoadCredential=admin-token"},
		{name: "setting that is no flag", edits: []edit{{"sovra.service.d/ollama.conf", "SOVRA_SLOTS=4", "SOVRA_SLOT=4"}},
			want: "SOVRA_SLOT names no flag"},
		{name: "slots differ from Ollama's", edits: []edit{{"ollama.service.d/sovra.conf", "OLLAMA_NUM_PARALLEL=4", "OLLAMA_NUM_PARALLEL=8"}},
			want: "SOVRA_SLOTS=4 but OLLAMA_NUM_PARALLEL=8"},
		{name: "runs as root", edits: []edit{{"sovra.service", "User=sovra", "User=root"}},
			want: "User=root"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, "systemd", tc.edits...)
			tc.expect(t, checkSystemd(t, analyze, flags, dir))
		})
	}
}

// checkSystemd checks a copy of deploy/systemd: systemd-analyze verify
// (any message fails, since unknown keys are only warnings to it),
// systemd-analyze security's exposure, and sovra's own rules.
func checkSystemd(t *testing.T, analyze string, flags map[string]bool, dir string) error {
	t.Helper()
	unit := filepath.Join(dir, "sovra.service")
	b, err := os.ReadFile(unit)
	if err != nil {
		return err
	}
	// An ollama.service for the Ollama drop-in to apply to, as Ollama's
	// Linux install makes one.
	ollama := filepath.Join(dir, "ollama.service")
	stub := "[Service]\nExecStart=" + sovraBinary(t) + " version\n"
	if err := os.WriteFile(ollama, []byte(stub), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(unit, []byte(strings.ReplaceAll(string(b), unitBinary, sovraBinary(t))), 0o644); err != nil {
		return err
	}
	var errs []error
	if out, err := run(analyze, "verify", "--man=no", unit, ollama); err != nil || strings.TrimSpace(out) != "" {
		errs = append(errs, fmt.Errorf("systemd-analyze verify (%v):\n%s", err, out))
	}
	if out, err := run(analyze, "security", "--offline=true", fmt.Sprintf("--threshold=%d", maxExposure), unit); err != nil {
		errs = append(errs, fmt.Errorf("systemd-analyze security: exposure over %.1f (%v):\n%s", float64(maxExposure)/10, err, tail(out, 1)))
	}
	sovra, err := readUnit(unit, filepath.Join(dir, "sovra.service.d"))
	if err != nil {
		return err
	}
	olla, err := readUnit(ollama, filepath.Join(dir, "ollama.service.d"))
	if err != nil {
		return err
	}
	return errors.Join(append(errs, checkUnitRules(flags, sovra, olla))...)
}

// checkUnitRules: secrets only through systemd credentials, settings that
// sovra knows, slots as Ollama's parallelism, and no root.
func checkUnitRules(flags map[string]bool, sovra, ollama unitFile) error {
	var errs []error
	if u := sovra.last("Service", "User"); u == "" || u == "root" || u == "0" {
		errs = append(errs, fmt.Errorf("sovra.service: User=%s: run as an unprivileged user", u))
	}
	env := sovra.env()
	creds := map[string]bool{}
	for _, c := range sovra.all("Service", "LoadCredential") {
		id, _, _ := strings.Cut(c, ":")
		creds[id] = true
	}
	for _, name := range []string{"admin-token", "cluster-token"} {
		v := "SOVRA_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_FILE"
		switch got := env[v]; {
		case got != "%d/"+name:
			errs = append(errs, fmt.Errorf("sovra.service: %s=%s, want %%d/%s (the credentials directory)", v, got, name))
		case !creds[name]:
			errs = append(errs, fmt.Errorf("sovra.service: %s=%s but no LoadCredential=%s:...", v, got, name))
		}
	}
	exec := strings.Fields(sovra.last("Service", "ExecStart"))
	if len(exec) < 2 || exec[1] != "serve" {
		errs = append(errs, fmt.Errorf("sovra.service: ExecStart=%s does not run sovra serve", strings.Join(exec, " ")))
	} else {
		errs = append(errs, checkSettings(flags, "sovra.service", exec[2:], keys(env)))
	}
	slots, parallel := env["SOVRA_SLOTS"], ollama.env()["OLLAMA_NUM_PARALLEL"]
	if slots != parallel {
		errs = append(errs, fmt.Errorf("SOVRA_SLOTS=%s but OLLAMA_NUM_PARALLEL=%s: sovra's slots are Ollama's parallel generations", slots, parallel))
	}
	return errors.Join(errs...)
}

// unitFile is a unit with its drop-ins: section -> key -> values in order.
type unitFile map[string]map[string][]string

// readUnit reads a unit file and then the drop-ins in dropins (sorted by
// name, as systemd applies them).
func readUnit(path, dropins string) (unitFile, error) {
	u := unitFile{}
	files := []string{path}
	more, _ := filepath.Glob(filepath.Join(dropins, "*.conf"))
	for _, f := range append(files, more...) {
		if err := u.read(f); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func (u unitFile) read(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
		default:
			k, v, _ := strings.Cut(line, "=")
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return sc.Err()
}

func (u unitFile) all(section, key string) []string { return u[section][key] }

func (u unitFile) last(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// env is the service's environment (Environment= lines, later wins).
func (u unitFile) env() map[string]string {
	out := map[string]string{}
	for _, line := range u.all("Service", "Environment") {
		for _, kv := range strings.Fields(line) {
			k, v, _ := strings.Cut(kv, "=")
			out[k] = v
		}
	}
	return out
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
