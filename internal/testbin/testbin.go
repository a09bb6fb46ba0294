// Package testbin builds the sovra binary once per test process, for the
// tests that run it as operators do: as separate processes.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// builds holds one build per set of build tags.
var builds sync.Map // tags -> func() (string, error)

func build(tags string) (string, error) {
	f, _ := builds.LoadOrStore(tags, sync.OnceValues(func() (string, error) {
		dir, err := os.MkdirTemp("", "sovra-bin-")
		if err != nil {
			return "", err
		}
		bin := filepath.Join(dir, "sovra")
		args := []string{"build", "-o", bin}
		if tags != "" {
			args = append(args, "-tags", tags)
		}
		out, err := exec.Command("go", append(args, "github.com/sovra/sovra/cmd/sovra")...).CombinedOutput()
		if err != nil {
			return "", &buildError{err: err, out: string(out)}
		}
		return bin, nil
	}))
	return f.(func() (string, error))()
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "build sovra: " + e.err.Error() + "\n" + e.out }

// Sovra returns the path of the built binary; it skips the test under
// -short and fails it when the binary cannot be built.
func Sovra(t testing.TB) string {
	t.Helper()
	return SovraTags(t)
}

// SovraTags is Sovra built with build tags (e.g. sovra_next, the build
// that plays the next version in the mixed-version tests).
func SovraTags(t testing.TB, tags ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin, err := build(strings.Join(tags, ","))
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
