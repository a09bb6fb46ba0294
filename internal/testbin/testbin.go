// Package testbin builds the sovra binary once per test process, for the
// tests that run it as operators do: as separate processes.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var build = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "sovra-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sovra")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/sovra/sovra/cmd/sovra").CombinedOutput()
	if err != nil {
		return "", &buildError{err: err, out: string(out)}
	}
	return bin, nil
})

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return "build sovra: " + e.err.Error() + "\n" + e.out }

// Sovra returns the path of the built binary; it skips the test under
// -short and fails it when the binary cannot be built.
func Sovra(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
