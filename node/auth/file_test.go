package auth

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, content string
		mode          os.FileMode
		want          string
		loose         bool
		err           error
	}{
		{"newline trimmed", "s3cret\n", 0o600, "s3cret", false, nil},
		{"crlf trimmed", "s3cret\r\n", 0o600, "s3cret", false, nil},
		{"no newline", "s3cret", 0o400, "s3cret", false, nil},
		{"readable by others", "s3cret\n", 0o644, "s3cret", true, nil},
		{"readable by the group", "s3cret\n", 0o640, "s3cret", true, nil},
		{"empty", "\n", 0o600, "", false, ErrBadTokenFile},
		{"two lines", "s3cret\nother\n", 0o600, "", false, ErrBadTokenFile},
		{"spaces", "s3 cret\n", 0o600, "", false, ErrBadTokenFile},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, string(rune('a'+i)))
			if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			tok, loose, err := ReadTokenFile(path)
			if tok != tc.want || !errors.Is(err, tc.err) || (runtime.GOOS != "windows" && loose != tc.loose) {
				t.Fatalf("got %q %v %v", tok, loose, err)
			}
			if err != nil && strings.Contains(err.Error(), "s3") {
				t.Fatalf("the error shows the content: %v", err)
			}
		})
	}
	if _, _, err := ReadTokenFile(filepath.Join(dir, "none")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestWriteTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin-token")
	if err := WriteTokenFile(path, "tok"); err != nil {
		t.Fatal(err)
	}
	tok, loose, err := ReadTokenFile(path)
	if tok != "tok" || loose || err != nil {
		t.Fatalf("read back %q %v %v", tok, loose, err)
	}
	if err := WriteTokenFile(path, "other"); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("overwrote: %v", err)
	}
}
