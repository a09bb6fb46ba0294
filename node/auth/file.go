package auth

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
)

// ErrBadTokenFile is a token file that holds no usable token.
var ErrBadTokenFile = errors.New("auth: the token file holds no usable token")

// ReadTokenFile reads a secret from the file at path: its whole content,
// less a trailing newline. loose reports that users other than the
// owner may read the file (callers warn: the decision is to warn, not to
// refuse, since mounted secrets such as Kubernetes' are often 0644).
// Errors never contain the file's content.
func ReadTokenFile(path string) (tok string, loose bool, err error) {
	info, err := os.Stat(path)
	if err != nil {
		return "", false, fmt.Errorf("token file: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", false, fmt.Errorf("token file: %w", err)
	}
	tok = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if tok == "" || strings.ContainsFunc(tok, isSpaceOrControl) {
		return "", false, fmt.Errorf("%w: %s (want one line without spaces)", ErrBadTokenFile, path)
	}
	return tok, runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0, nil
}

func isSpaceOrControl(r rune) bool { return r <= ' ' || r == 0x7f }

// WriteTokenFile writes tok and a newline to a new file at path, readable
// by its owner only; it fails if the file exists.
func WriteTokenFile(path, tok string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("token file: %w", err)
	}
	_, err = f.WriteString(tok + "\n")
	return errors.Join(err, f.Close())
}
