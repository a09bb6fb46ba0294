package deploy_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

// requireDeployTools makes a missing tool fail the test instead of
// skipping it (scripts/test sets it).
const requireDeployTools = "SOVRA_REQUIRE_DEPLOY_TOOLS"

// tool returns the path of a command-line tool, or skips the test when it
// is missing, unless SOVRA_REQUIRE_DEPLOY_TOOLS=1.
func tool(t *testing.T, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	msg := fmt.Sprintf("%s not found (apt-get install %s)", name, pkg)
	if os.Getenv(requireDeployTools) == "1" {
		t.Fatalf("%s, and %s=1", msg, requireDeployTools)
	}
	t.Skip(msg)
	return ""
}

// run runs a tool and returns its stdout and stderr together.
func run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// edit is a change to a copy of a deployment file: old must occur in it.
type edit struct{ file, old, new string }

// copyDir copies the deployment files under src (relative to this
// package) into a new temporary directory and applies edits to the copy.
func copyDir(t *testing.T, src string, edits ...edit) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		path := filepath.Join(dst, e.file)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), e.old) {
			t.Fatalf("%s lacks %q: the test case no longer changes anything", e.file, e.old)
		}
		if err := os.WriteFile(path, []byte(strings.Replace(string(b), e.old, e.new, 1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// checkCase is one check of a deployment file: as shipped (want empty) or
// broken by edits, when the check must fail with an error containing want.
type checkCase struct {
	name  string
	edits []edit
	want  string
}

// expect compares what a check found with what the case wants.
func (c checkCase) expect(t *testing.T, err error) {
	t.Helper()
	switch {
	case c.want == "" && err != nil:
		t.Fatalf("the file as shipped fails its check:\n%v", err)
	case c.want != "" && err == nil:
		t.Fatalf("the check passed a broken file (want an error containing %q)", c.want)
	case c.want != "" && !strings.Contains(err.Error(), c.want):
		t.Fatalf("the check failed for another reason than %q:\n%v", c.want, err)
	case err != nil:
		t.Logf("fails as it should:\n%v", err)
	}
}

// The sovra binary, built once for the tests that need it.
var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
	flagsOnce sync.Once
	flags     map[string]bool
	flagsErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// sovraBinary builds ./cmd/sovra once and returns its path.
func sovraBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "sovra-deploy-test-")
		if buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(buildDir, "sovra"), "../cmd/sovra").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "sovra")
}

var flagLine = regexp.MustCompile(`(?m)^\s+(?:-\w, )?--([a-z0-9-]+)`)

// serveFlags are the flags of `sovra serve`, as its --help lists them.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	bin := sovraBinary(t)
	flagsOnce.Do(func() {
		out, err := run(bin, "serve", "--help")
		if err != nil {
			flagsErr = fmt.Errorf("sovra serve --help: %v\n%s", err, out)
			return
		}
		flags = map[string]bool{}
		for _, m := range flagLine.FindAllStringSubmatch(out, -1) {
			flags[m[1]] = true
		}
		if !flags["admin-token-file"] || !flags["join"] {
			flagsErr = fmt.Errorf("no flags found in sovra serve --help:\n%s", out)
		}
	})
	if flagsErr != nil {
		t.Fatal(flagsErr)
	}
	return flags
}

// checkSettings checks command-line arguments and environment variable
// names given to `sovra serve`: every --flag and SOVRA_<FLAG> must be a
// flag of serve, and no secret may be given by value (ps and the
// environment of a process are readable by too many): only by file.
func checkSettings(flags map[string]bool, where string, args []string, env []string) error {
	var errs []error
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !flags[name] {
			errs = append(errs, fmt.Errorf("%s: --%s is not a flag of sovra serve", where, name))
		}
		if secretSetting(name) {
			errs = append(errs, fmt.Errorf("%s: --%s gives a secret on the command line: use --%s-file", where, name, name))
		}
	}
	sort.Strings(env)
	for _, e := range env {
		if !strings.HasPrefix(e, "SOVRA_") {
			continue
		}
		name := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(e, "SOVRA_")), "_", "-")
		if !flags[name] {
			errs = append(errs, fmt.Errorf("%s: %s names no flag of sovra serve", where, e))
		}
		if secretSetting(name) {
			errs = append(errs, fmt.Errorf("%s: %s gives a secret in the environment: use %s_FILE", where, e, e))
		}
	}
	return errors.Join(errs...)
}

func secretSetting(name string) bool { return name == "admin-token" || name == "cluster-token" }

// keys returns the keys of a map, sorted.
func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
