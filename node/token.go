package node

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

	"go.uber.org/zap"

	"github.com/sovra/sovra/node/auth"
)

// AdminTokenFile is the file in the data directory that holds the
// management token a node made because none was given.
const AdminTokenFile = "admin-token"

// loadAdminToken settles the management token: the configured one, or
// the one in <DataDir>/admin-token, made (mode 0600) when absent. The node
// never runs without one. Only the file's path is logged.
func (n *Node) loadAdminToken() error {
	if n.cfg.AdminToken != "" {
		n.adminToken = n.cfg.AdminToken
		return nil
	}
	path := filepath.Join(n.cfg.DataDir, AdminTokenFile)
	tok, loose, err := auth.ReadTokenFile(path)
	switch {
	case err == nil:
		n.log.Info("management token read from its file", zap.String("file", path))
		if loose {
			n.log.Warn("the management token file is readable by other users: chmod 600 it", zap.String("file", path))
		}
	case errors.Is(err, fs.ErrNotExist):
		if tok, err = newAdminTokenFile(n.cfg.DataDir, path); err != nil {
			return err
		}
		n.log.Info("no --admin-token given: made a management token; send it as Authorization: Bearer <token>",
			zap.String("file", path))
	default:
		return err
	}
	if n.cfg.Cluster.enabled() {
		n.log.Warn("each node makes its own management token: give every node of a cluster the same --admin-token-file")
	}
	n.adminToken = tok
	return nil
}

// newAdminTokenFile makes a random token and writes it to path.
func newAdminTokenFile(dir, path string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("data directory: %w", err)
	}
	tok, err := auth.NewToken()
	if err != nil {
		return "", err
	}
	if err := auth.WriteTokenFile(path, tok); err != nil {
		return "", err
	}
	return tok, nil
}

// isLoopback reports whether a listener's address is a loopback one.
func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}
