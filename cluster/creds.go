package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/pki"
)

// ServerName is the TLS server name (SNI) peers send when they call each
// other's HTTP API: a node answers it with its cluster certificate, and
// any other name with the certificate its clients see.
const ServerName = "sovra-cluster"

// proofHeader carries a proof that the sender holds the cluster token,
// bound to the TLS connection: on the requests of nodes without a
// certificate yet, and on the answers to them.
const proofHeader = "Sovra-Join-Proof"

// ekmLabel names the keying material both ends of a TLS connection export
// to bind a join proof to that connection (RFC 5705).
const ekmLabel = "EXPORTER-sovra-join-v1"

// credsDir is where a node keeps its cluster certificate, key and CA.
func (c *Cluster) credsDir() string { return filepath.Join(c.cfg.DataDir, "tls") }

// loadCreds fills the keyring: with what the caller put there (the
// operator's PKI), else with what this node saved, else, for a node that
// starts a new cluster alone, with a new CA. A node that joins has none
// until it certifies.
func (c *Cluster) loadCreds() error {
	if c.keys.Get() != nil {
		return nil
	}
	creds, err := pki.LoadDir(c.credsDir(), c.cfg.NodeID)
	switch {
	case err == nil:
		c.keys.Set(creds)
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("cluster: credentials in %s: %w", c.credsDir(), err)
	case c.cfg.Bootstrap:
		return c.newCA()
	}
	return nil
}

// newCA makes this node the first of a new cluster: a new CA and its own
// certificate, saved before raft can use them.
func (c *Cluster) newCA() error {
	creds, err := pki.NewCluster(c.cfg.NodeID)
	if err != nil {
		return err
	}
	if err := creds.Save(c.credsDir()); err != nil {
		return err
	}
	c.keys.Set(creds)
	c.log.Info("created the cluster CA", zap.String("dir", c.credsDir()))
	return nil
}

// issuer is the CA this node signs with: its own, or the one the state
// holds.
func (c *Cluster) issuer() (*pki.CA, error) {
	creds := c.keys.Get()
	if creds == nil {
		return nil, fmt.Errorf("%w: this node has not joined yet", errRetry)
	}
	if creds.CA != nil {
		return creds.CA, nil
	}
	var rec *state.ClusterCA
	c.machine.Read(func(s *state.State) { rec = s.ClusterCA })
	if rec == nil {
		return nil, fmt.Errorf("%w: this node does not hold the cluster CA yet", errRetry)
	}
	ca, err := pki.LoadCA([]byte(rec.Cert), []byte(rec.Key))
	if err != nil {
		return nil, err
	}
	upd, err := creds.WithCA(ca)
	if err != nil {
		return nil, err
	}
	c.keys.Set(upd)
	return ca, nil
}

// publishCA records this node's CA in the state so that every member can
// issue certificates. The leader calls it; it is a no-op once recorded.
func (c *Cluster) publishCA(ctx context.Context) error {
	creds := c.keys.Get()
	if creds == nil || creds.CA == nil {
		return nil
	}
	var have bool
	c.machine.Read(func(s *state.State) { have = s.ClusterCA != nil })
	if have {
		return nil
	}
	key, err := creds.CA.KeyPEM()
	if err != nil {
		return err
	}
	return c.commitLocal(ctx, state.Command{Type: state.TypeSetClusterCA,
		Body: state.SetClusterCA{CA: state.ClusterCA{Cert: string(creds.CA.CertPEM()), Key: string(key)}}})
}

// certifyRequest asks a member to sign this node's certificate.
type certifyRequest struct {
	ID  string `json:"id"`
	CSR string `json:"csr"`
}

// certifyResponse carries the cluster CA and the node's certificate.
type certifyResponse struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
}

// proof binds the cluster token to one TLS connection (its exported
// keying material) and to a message: a man in the middle holds two
// connections with different material and cannot forge either side.
func proof(token, side string, ekm, msg []byte) string {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte(side))
	m.Write([]byte{0})
	m.Write(ekm)
	sum := sha256.Sum256(msg)
	m.Write(sum[:])
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// certify gets this node a certificate from the member at addr: over TLS
// without a certificate of its own, proving that it holds the cluster
// token without sending it, and checking that the member holds it too.
func (c *Cluster) certify(ctx context.Context, addr string) error {
	key, err := pki.NewKey()
	if err != nil {
		return err
	}
	csr, err := pki.NewCSR(c.cfg.NodeID, key)
	if err != nil {
		return err
	}
	var resp certifyResponse
	if err := c.tokenCall(ctx, addr, "certify", certifyRequest{ID: c.cfg.NodeID, CSR: string(csr)}, &resp); err != nil {
		return err
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	creds, err := pki.FromPEM(c.cfg.NodeID, []byte(resp.CA), []byte(resp.Cert), keyPEM)
	if err != nil {
		return fmt.Errorf("%w: the certificate %s issued: %v", ErrInvalid, addr, err)
	}
	if err := creds.Save(c.credsDir()); err != nil {
		return err
	}
	c.keys.Set(creds)
	c.log.Info("received a cluster certificate", zap.String("from", addr))
	return nil
}

// tokenCall posts body to route on its own TLS connection with addr,
// proving that this node holds the cluster token without sending it (the
// proof is bound to the connection's keying material) and checking the
// answer's proof that the member holds it too. It serves nodes that have
// no cluster certificate yet: joining and forming ones.
func (c *Cluster) tokenCall(ctx context.Context, addr, route string, in, out any) error {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, ServerName: ServerName,
		InsecureSkipVerify: true} // the member proves itself with the token instead
	conn, err := c.dialTLS(ctx, cfg, addr)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errRetry, addr, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	st := conn.ConnectionState()
	ekm, err := st.ExportKeyingMaterial(ekmLabel, nil, 32)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+routePrefix+route, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(proofHeader, proof(c.cfg.Token, "client", ekm, body))
	if err := req.Write(conn); err != nil {
		return fmt.Errorf("%w: %s: %v", errRetry, addr, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errRetry, addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return decodeError(resp)
	}
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errRetry, addr, err)
	}
	want := proof(c.cfg.Token, "server", ekm, answer)
	if subtle.ConstantTimeCompare([]byte(want), []byte(resp.Header.Get(proofHeader))) != 1 {
		return fmt.Errorf("%w: %s could not prove that it holds the cluster token", ErrBadToken, addr)
	}
	if err := json.Unmarshal(answer, out); err != nil {
		return fmt.Errorf("%w: %s: %v", errRetry, addr, err)
	}
	return nil
}

// tokenRoute serves a route of tokenCall: it checks the caller's proof,
// runs h over the body and proves this node's token in the answer.
func (c *Cluster) tokenRoute(h func(r *http.Request, body []byte) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ekm, body, err := c.checkProof(r)
		if err != nil {
			writeError(w, err)
			return
		}
		out, err := h(r, body)
		if err != nil {
			writeError(w, err)
			return
		}
		answer, err := json.Marshal(out)
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set(proofHeader, proof(c.cfg.Token, "server", ekm, answer))
		w.Write(answer)
	}
}

func (c *Cluster) checkProof(r *http.Request) (ekm, body []byte, err error) {
	if r.TLS == nil {
		return nil, nil, fmt.Errorf("%w: this call needs TLS", ErrBadToken)
	}
	if ekm, err = r.TLS.ExportKeyingMaterial(ekmLabel, nil, 32); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if body, err = io.ReadAll(http.MaxBytesReader(nil, r.Body, 64<<10)); err != nil {
		return nil, nil, fmt.Errorf("%w: body: %v", ErrInvalid, err)
	}
	want := proof(c.cfg.Token, "client", ekm, body)
	if subtle.ConstantTimeCompare([]byte(want), []byte(r.Header.Get(proofHeader))) != 1 {
		c.log.Warn("refused a call without proof of the cluster token", zap.String("remote", r.RemoteAddr),
			zap.String("path", r.URL.Path))
		return nil, nil, fmt.Errorf("%w: node %s refused the token proof of %s", ErrBadToken, c.cfg.NodeID, r.RemoteAddr)
	}
	return ekm, body, nil
}

// dialTLS connects to addr through the configured dialer (tests inject
// faults there).
func (c *Cluster) dialTLS(ctx context.Context, cfg *tls.Config, addr string) (*tls.Conn, error) {
	var conn net.Conn
	var err error
	if c.cfg.Dial != nil {
		conn, err = c.cfg.Dial(ctx, "tcp", addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}

// serveCertify signs a joining node's certificate request (tokenRoute has
// checked its proof). A registered node cannot be certified again (its
// identity would be taken over): an operator removes it first.
func (c *Cluster) serveCertify(r *http.Request, body []byte) (any, error) {
	var req certifyRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, fmt.Errorf("%w: body: %v", ErrInvalid, err)
	}
	if err := pki.CheckNodeID(req.ID); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if c.registered(req.ID) {
		return nil, fmt.Errorf("%w: node %s is already a member; remove it first to let another node take its id", ErrMemberExists, req.ID)
	}
	ca, err := c.issuer()
	if err != nil {
		return nil, err
	}
	cert, err := ca.SignCSR([]byte(req.CSR), req.ID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	c.log.Info("certified a joining node", zap.String("id", req.ID), zap.String("remote", r.RemoteAddr))
	return certifyResponse{CA: string(ca.CertPEM()), Cert: string(cert)}, nil
}

// registered reports whether id is a registered member.
func (c *Cluster) registered(id string) bool {
	var ok bool
	c.machine.Read(func(s *state.State) { _, ok = s.Nodes[id] })
	return ok
}

// certifyLoop gets this node a certificate from one of addrs, retrying
// until one answers or ctx ends. A refused token or a taken id is not
// retried.
func (c *Cluster) certifyLoop(ctx context.Context, addrs []string) error {
	for attempt := 0; ; attempt++ {
		var last error
		for _, addr := range addrs {
			if addr == c.cfg.HTTPAddr {
				continue
			}
			err := c.certify(ctx, addr)
			if err == nil {
				return nil
			}
			if permanent(err) {
				return err
			}
			last = err
			c.logJoinRetry("certificate request failed", err, addr)
		}
		if !sleepCtx(ctx, backoff(attempt, 50*time.Millisecond, 5*time.Second)) {
			return errors.Join(ctx.Err(), last)
		}
	}
}
