package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ticker"
	"github.com/sovra/sovra/node/auth"
)

// This file records admin actions in the replicated audit log. A command
// an admin route writes carries its record (state.Command.Audit), so the
// action and its record are one log entry and cannot diverge; actions
// outside the state (join, remove, snapshot restore) are recorded by a
// command of their own right after; failed admin authentication is
// buffered and written in batches, at most one write per flush interval
// and maxFailedPerFlush records in it (the rest are counted in one
// record).

// Audit actions that are not command types.
const (
	ActionAuthFailed = "auth-failed"
	ActionJoin       = "join-node"
	ActionRemove     = "remove-node-from-cluster"
	ActionRestore    = "restore-snapshot"
)

// maxFailedPerFlush bounds the failed-authentication records one flush
// writes; DefaultAuditFlush is how often they are written.
const (
	maxFailedPerFlush = 50
	DefaultAuditFlush = time.Second
)

type auditKey struct{}

// auditInfo is who makes an admin request, and from where.
type auditInfo struct {
	actor, source, route string
}

func (i auditInfo) record(action, target string, now time.Time) state.AuditRecord {
	return state.AuditRecord{Time: now.UnixMilli(), Actor: i.actor, Action: action, Target: target, Source: i.source, Detail: i.route}
}

// auditContext puts the request's auditInfo into its user context, where
// the audited cluster finds it.
func auditContext(c *fiber.Ctx) error {
	p, _ := auth.FromCtx(c)
	info := auditInfo{actor: p.KeyID, source: c.IP(), route: c.Method() + " " + c.Path()}
	c.SetUserContext(context.WithValue(c.UserContext(), auditKey{}, info))
	return c.Next()
}

// auditedCluster attaches an audit record to every command an admin
// request writes, and records the actions outside the state.
type auditedCluster struct {
	Cluster
	now func() time.Time
	log *zap.Logger
}

func (a auditedCluster) Apply(ctx context.Context, cmd state.Command) (state.Outcome, error) {
	if info, ok := ctx.Value(auditKey{}).(auditInfo); ok && cmd.Audit == nil {
		r := info.record(cmd.Type.String(), targetOf(cmd.Body), a.now())
		cmd.Audit = &r
	}
	return a.Cluster.Apply(ctx, cmd)
}

func (a auditedCluster) Join(ctx context.Context, req cluster.JoinRequest) error {
	err := a.Cluster.Join(ctx, req)
	a.after(ctx, ActionJoin, req.ID, err)
	return err
}

func (a auditedCluster) Remove(ctx context.Context, nodeID string) error {
	err := a.Cluster.Remove(ctx, nodeID)
	a.after(ctx, ActionRemove, nodeID, err)
	return err
}

func (a auditedCluster) RestoreSnapshot(ctx context.Context, r io.Reader, force bool) error {
	err := a.Cluster.RestoreSnapshot(ctx, r, force)
	a.after(ctx, ActionRestore, "", err)
	return err
}

// after records an action outside the state, with its outcome.
func (a auditedCluster) after(ctx context.Context, action, target string, err error) {
	info, ok := ctx.Value(auditKey{}).(auditInfo)
	if !ok {
		return
	}
	r := info.record(action, target, a.now())
	r.Outcome = "ok"
	if err != nil {
		r.Outcome = toAPIError(err).Code
		if r.Outcome == "" {
			r.Outcome = "error"
		}
	}
	// A done action's record must not fail with the caller's hang-up; a
	// failed action's record is written within the caller's own deadline,
	// so that an admin call without a majority still answers in time.
	base := ctx
	if err == nil {
		base = context.WithoutCancel(ctx)
	}
	wctx, cancel := context.WithTimeout(base, 10*time.Second)
	defer cancel()
	if _, aerr := a.Cluster.Apply(wctx, state.Command{Type: state.TypeAppendAudit, Body: state.AppendAudit{Records: []state.AuditRecord{r}}}); aerr != nil {
		a.log.Error("could not record an admin action in the audit log", zap.String("action", action), zap.Error(aerr))
	}
}

// targetOf is what a command acts on: the name or id it carries.
func targetOf(body any) string {
	b, err := json.Marshal(body)
	if err != nil {
		return ""
	}
	var v struct {
		ID, Name   string
		Deployment struct{ Name string }
		Model      struct{ Name string }
		Key        struct{ ID string }
		Node       struct{ ID string }
	}
	_ = json.Unmarshal(b, &v) // fields of other shapes are left empty
	for _, t := range []string{v.ID, v.Name, v.Deployment.Name, v.Model.Name, v.Key.ID, v.Node.ID} {
		if t != "" {
			return t
		}
	}
	return ""
}

// failedAuth buffers failed admin authentications for the audit log.
type failedAuth struct {
	mu      sync.Mutex
	pending []state.AuditRecord
	dropped int
}

// add buffers one failure; past maxFailedPerFlush it only counts it.
func (f *failedAuth) add(r state.AuditRecord) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.pending) >= maxFailedPerFlush {
		f.dropped++
		return
	}
	f.pending = append(f.pending, r)
}

// take returns the buffered records, with one that counts those dropped.
func (f *failedAuth) take(now time.Time) []state.AuditRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.pending
	if f.dropped > 0 {
		out = append(out, state.AuditRecord{Time: now.UnixMilli(), Actor: "node", Action: ActionAuthFailed, Outcome: "suppressed",
			Detail: strconv.Itoa(f.dropped) + " more failed admin authentications were not recorded one by one"})
	}
	f.pending, f.dropped = nil, 0
	return out
}

// requireAdmin is the admin routes' authentication, which buffers each
// refusal for the audit log.
func (s *Server) requireAdmin() fiber.Handler {
	req := s.auth.Require(auth.RoleAdmin)
	return func(c *fiber.Ctx) error {
		err := req(c)
		if errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrForbidden) {
			actor, outcome := "anonymous", "unauthenticated"
			if p, ok := auth.FromCtx(c); ok {
				actor, outcome = p.KeyID, "forbidden"
			}
			s.failed.add(state.AuditRecord{Time: s.now().UnixMilli(), Actor: actor, Action: ActionAuthFailed,
				Target: c.Method() + " " + c.Path(), Source: c.IP(), Outcome: outcome})
		}
		return err
	}
}

// startAuditFlush runs flushFailedAuth until the server stops.
func (s *Server) startAuditFlush(cl Cluster) {
	every := s.cfg.AuditFlush
	if every <= 0 {
		every = DefaultAuditFlush
	}
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		s.flushFailedAuth(s.base, cl, every)
	}()
}

// flushFailedAuth writes the buffered failures every interval until ctx
// ends.
func (s *Server) flushFailedAuth(ctx context.Context, cl Cluster, every time.Duration) {
	ticker.Every(ctx, every, func(ctx context.Context) {
		recs := s.failed.take(s.now())
		if len(recs) == 0 {
			return
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := cl.Apply(wctx, state.Command{Type: state.TypeAppendAudit, Body: state.AppendAudit{Records: recs}})
		if err != nil && ctx.Err() == nil {
			s.log.Warn("could not record failed admin authentications", zap.Int("records", len(recs)), zap.Error(err))
		}
	})
}

// Bounds of audit queries.
const (
	defaultAuditPage = 100
	maxAuditPage     = 1000
)

// auditQuery is a GET /admin/v1/audit's filters.
type auditQuery struct {
	since         int64 // Unix ms
	after         uint64
	actor, action string
	limit         int
}

func parseAuditQuery(c *fiber.Ctx) (auditQuery, error) {
	q := auditQuery{actor: c.Query("actor"), action: c.Query("action"), limit: defaultAuditPage}
	if v := c.Query("since"); v != "" {
		t, err := parseTime(v)
		if err != nil {
			return q, invalidParam("since", "since: want RFC 3339 or Unix milliseconds")
		}
		q.since = t
	}
	if v := c.Query("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return q, invalidParam("after", "after: want a sequence number")
		}
		q.after = n
	}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxAuditPage {
			return q, invalidParam("limit", "limit: want 1 to %d", maxAuditPage)
		}
		q.limit = n
	}
	return q, nil
}

func parseTime(v string) (int64, error) {
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return n, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return 0, err
	}
	return t.UnixMilli(), nil
}

func (q auditQuery) match(e *state.AuditEntry) bool {
	return e.Seq > q.after && e.Time >= q.since && (q.actor == "" || e.Actor == q.actor) && (q.action == "" || e.Action == q.action)
}

// auditRoutes mounts GET /admin/v1/audit and /admin/v1/audit/verify.
func auditRoutes(a fiber.Router, cl Cluster) {
	a.Get("/audit", func(c *fiber.Ctx) error {
		q, err := parseAuditQuery(c)
		if err != nil {
			return err
		}
		entries := []state.AuditEntry{}
		var next uint64
		err = cl.Read(c.UserContext(), c.QueryBool("stale"), func(s *state.State) {
			for i := range s.Audit {
				e := &s.Audit[i]
				if !q.match(e) {
					continue
				}
				if len(entries) == q.limit {
					next = entries[len(entries)-1].Seq
					break
				}
				entries = append(entries, *e)
			}
		})
		if err != nil {
			return err
		}
		out := fiber.Map{"entries": entries}
		if next != 0 {
			out["next_after"] = next
		}
		return c.JSON(out)
	})
	a.Get("/audit/verify", func(c *fiber.Ctx) error {
		var (
			brk    *state.AuditBreak
			anchor state.AuditAnchor
			n      int
			head   fiber.Map
		)
		err := cl.Read(c.UserContext(), c.QueryBool("stale"), func(s *state.State) {
			anchor, n = s.AuditAnchor, len(s.Audit)
			brk = state.VerifyAudit(s.AuditAnchor, s.Audit)
			if n > 0 {
				head = fiber.Map{"seq": s.Audit[n-1].Seq, "hash": s.Audit[n-1].Hash}
			}
		})
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"ok": brk == nil, "entries": n, "anchor": anchor, "head": head, "broken": brk})
	})
}

// errNoKeys answers key routes on a node that cannot hash keys.
var errNoKeys = &Error{Status: http.StatusServiceUnavailable, Type: typeUnavailable, Code: "keys_unavailable",
	Message: fmt.Sprint(auth.ErrNoCluster)}
