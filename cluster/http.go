package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
)

// maxBody bounds internal request bodies (snapshots included).
const maxBody = 256 << 20

// Handler serves the internal peer routes, all POST with JSON bodies under
// /internal/v1/cluster/, over TLS. Every route but certify needs a client
// certificate of the cluster CA (the caller serves the routes to peers
// with Keyring's certificate, ServerName); a node's own claims (join,
// heartbeat) must name the node its certificate names:
//
//	certify     {id, csr}              a joining node proves it holds the cluster token and gets its certificate
//	join        JoinRequest            add a node (forwarded to the leader)
//	apply       {entry}                commit an encoded command; answers a state.Outcome
//	read-index  {}                     the index a linearizable read must wait for
//	heartbeat   {node}                 liveness, and registration when it changed
//	remove      {id}                   remove a node; Leave sends this node's id
//	restore     {data, force}          replace the state with a snapshot
//	peers       {id, http_addr, ...}   bootstrap-expect peer exchange (never forwarded)
//	status      {}                     this node's Status
//
// A request carrying Sovra-Forwarded is executed here or refused with
// not_leader; others are forwarded to the leader like the Go API does.
// Errors are {"code", "error"} with a matching status (403 bad_token,
// 403 not_peer, 409 member_exists).
func (c *Cluster) Handler() http.Handler {
	mux := http.NewServeMux()
	route := func(name string, h func(r *http.Request, fwd bool) (any, error)) {
		mux.HandleFunc("POST "+routePrefix+name, c.serve(h))
	}
	route("join", c.serveJoin)
	route("apply", c.serveApply)
	route("read-index", c.serveReadIndex)
	route("heartbeat", c.serveHeartbeat)
	route("remove", c.serveRemove)
	route("restore", c.serveRestore)
	route("status", func(r *http.Request, _ bool) (any, error) { return c.Status(r.Context()) })
	outer := http.NewServeMux()
	outer.HandleFunc("POST "+routePrefix+"certify", c.tokenRoute(c.serveCertify))
	outer.HandleFunc("POST "+routePrefix+"peers", c.tokenRoute(c.servePeers))
	outer.Handle("/", c.checkPeer(mux))
	return outer
}

type peerKey struct{}

// checkPeer admits calls that come with a certificate of the cluster CA
// and remembers the node it names.
func (c *Cluster) checkPeer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := c.keys.ConnPeerID(r.TLS)
		if err != nil {
			c.log.Warn("refused an internal call without a cluster certificate", zap.String("remote", r.RemoteAddr),
				zap.String("path", r.URL.Path), zap.Error(err))
			writeError(w, fmt.Errorf("%w: %v", ErrNotPeer, err))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), peerKey{}, id)))
	})
}

// checkClaim refuses a node speaking for another node: only a forwarding
// member may carry another node's join or heartbeat.
func checkClaim(r *http.Request, fwd bool, id string) error {
	peer, _ := r.Context().Value(peerKey{}).(string)
	if fwd || peer == id {
		return nil
	}
	return fmt.Errorf("%w: the certificate names %s, the request %.128q", ErrNotPeer, peer, id)
}

// serve decodes nothing itself: it runs h and writes its answer or error.
func (c *Cluster) serve(h func(r *http.Request, fwd bool) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		ctx, cancel, err := callerDeadline(r)
		if err != nil {
			writeError(w, err)
			return
		}
		defer cancel()
		out, err := h(r.WithContext(ctx), r.Header.Get(forwardedHeader) != "")
		if err != nil {
			writeError(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	}
}

// callerDeadline is the context a call runs under: the caller's deadline
// (Sovra-Timeout-Ms, the milliseconds it had left when it sent the call),
// else internalTimeout. A call that arrives with no time left is refused
// before it does anything.
func callerDeadline(r *http.Request) (context.Context, context.CancelFunc, error) {
	d := internalTimeout
	if v := r.Header.Get(timeoutHeader); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s %q", ErrInvalid, timeoutHeader, v)
		}
		if ms <= 0 {
			return nil, nil, fmt.Errorf("%w: the call arrived after its deadline", ErrExpired)
		}
		d = min(time.Duration(ms)*time.Millisecond, internalTimeout)
	}
	// Not derived from the request's cancellation: behind Fiber's adaptor
	// that is fasthttp's RequestCtx, which never cancels on a hang-up and
	// whose Done races with the server's shutdown when watched. The
	// deadline bounds the call.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), d)
	return ctx, cancel, nil
}

func writeError(w http.ResponseWriter, err error) {
	code, status := codeOf(err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(errorBody{Code: code, Error: err.Error()})
}

func decode[T any](r *http.Request) (T, error) {
	var v T
	if err := json.NewDecoder(r.Body).Decode(&v); err != nil && err != io.EOF {
		return v, fmt.Errorf("%w: body: %v", ErrInvalid, err)
	}
	return v, nil
}

// local runs leader work here when the request was forwarded, else through
// the forwarding path.
func (c *Cluster) local(ctx context.Context, fwd bool, op leaderOp) error {
	if fwd {
		return op.local(ctx)
	}
	return c.onLeader(ctx, op)
}

func (c *Cluster) serveJoin(r *http.Request, fwd bool) (any, error) {
	req, err := decode[JoinRequest](r)
	if err != nil {
		return nil, err
	}
	if err := checkClaim(r, fwd, req.ID); err != nil {
		return nil, err
	}
	if !fwd {
		return struct{}{}, c.Join(r.Context(), req)
	}
	return struct{}{}, c.joinLocal(r.Context(), req)
}

func (c *Cluster) serveApply(r *http.Request, fwd bool) (any, error) {
	req, err := decode[applyRequest](r)
	if err != nil {
		return nil, err
	}
	var out state.Outcome
	if fwd {
		out, err = c.applyLocal(r.Context(), req.Entry)
	} else {
		out, err = c.applyEntry(r.Context(), req.Entry, false)
	}
	return out, err
}

func (c *Cluster) serveReadIndex(r *http.Request, fwd bool) (any, error) {
	if !fwd {
		idx, err := c.readIndex(r.Context())
		return readIndexResponse{Index: idx}, err
	}
	idx, err := c.readIndexLocal(r.Context())
	return readIndexResponse{Index: idx}, err
}

func (c *Cluster) serveHeartbeat(r *http.Request, fwd bool) (any, error) {
	req, err := decode[heartbeatRequest](r)
	if err != nil {
		return nil, err
	}
	if err := checkClaim(r, fwd, req.Node.ID); err != nil {
		return nil, err
	}
	return struct{}{}, c.local(r.Context(), fwd, leaderOp{
		route: "heartbeat", in: req, idempotent: true,
		local: func(ctx context.Context) error { return c.heartbeatLocal(ctx, req.Node) },
	})
}

func (c *Cluster) serveRemove(r *http.Request, fwd bool) (any, error) {
	req, err := decode[removeRequest](r)
	if err != nil {
		return nil, err
	}
	if !fwd {
		return struct{}{}, c.Remove(r.Context(), req.ID)
	}
	return struct{}{}, c.removeLocal(r.Context(), req.ID)
}

func (c *Cluster) serveRestore(r *http.Request, fwd bool) (any, error) {
	req, err := decode[restoreRequest](r)
	if err != nil {
		return nil, err
	}
	switch {
	case !req.Force:
		return nil, ErrRestoreNotForced
	case !fwd:
		return struct{}{}, c.restoreBytes(r.Context(), req.Data)
	}
	return struct{}{}, c.restoreLocal(r.Context(), req.Data)
}

func (c *Cluster) servePeers(_ *http.Request, body []byte) (any, error) {
	var p peerInfo
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, fmt.Errorf("%w: body: %v", ErrInvalid, err)
	}
	return c.exchangePeers(p), nil
}
