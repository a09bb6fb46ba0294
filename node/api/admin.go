package api

import (
	"bytes"
	"context"
	"io"
	"net/http"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"

	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/scheduler"
)

// Cluster is what the admin and internal routes need from the node's
// cluster membership.
type Cluster interface {
	Status(ctx context.Context) (cluster.Status, error)
	Join(ctx context.Context, req cluster.JoinRequest) error
	Remove(ctx context.Context, nodeID string) error
	SaveSnapshot(ctx context.Context, w io.Writer) error
	RestoreSnapshot(ctx context.Context, r io.Reader, force bool) error
	// Read runs fn over the replicated state: linearizable unless stale.
	Read(ctx context.Context, stale bool, fn func(*state.State)) error
	// Apply commits a command through the leader; business errors come
	// back as the error.
	Apply(ctx context.Context, cmd state.Command) (state.Outcome, error)
	// SchedulerOptions are the options the leader schedules with, now.
	SchedulerOptions() scheduler.Options
	// Handler serves the internal peer routes under /internal/v1/cluster/.
	Handler() http.Handler
}

// adminRoutes mounts /admin/v1 and the internal peer routes. Admin calls
// need a principal of role admin (the management token), and their writes
// a JSON body; each ends by its deadline (adminDeadline).
func (s *Server) adminRoutes(cl Cluster) {
	// The cluster's handler checks its callers itself: a cluster
	// certificate, or the token proof of a node that is joining.
	s.app.All("/internal/v1/cluster/*", s.peerOrJoining, s.readBody, adaptor.HTTPHandler(cl.Handler()))
	s.startAuditFlush(cl)
	raw := cl
	cl = auditedCluster{Cluster: cl, now: s.now, log: s.log}
	// The body is read (and bounded) before requireJSON looks at it.
	a := s.app.Group("/admin/v1", s.requireAdmin(), auditContext, s.adminDeadline, s.readBody, requireJSON)
	a.Get("/routing", s.routingView)
	a.Get("/cluster", func(c *fiber.Ctx) error {
		st, err := cl.Status(c.UserContext())
		if err != nil {
			return err
		}
		return c.JSON(st)
	})
	a.Get("/nodes", func(c *fiber.Ctx) error {
		var nodes []*state.Node
		err := cl.Read(c.UserContext(), c.QueryBool("stale"), func(s *state.State) {
			for _, n := range s.NodeList() {
				cp := *n
				nodes = append(nodes, &cp)
			}
		})
		if err != nil {
			return err
		}
		return c.JSON(fiber.Map{"nodes": nodes})
	})
	a.Put("/nodes/:id/labels", func(c *fiber.Ctx) error { return setNodeLabels(c, cl) })
	a.Post("/cluster/join", func(c *fiber.Ctx) error {
		var req cluster.JoinRequest
		if err := decodeBody(c, &req); err != nil {
			return err
		}
		if err := cl.Join(c.UserContext(), req); err != nil {
			return err
		}
		return c.JSON(fiber.Map{"joined": req.ID})
	})
	a.Post("/cluster/remove", func(c *fiber.Ctx) error {
		var req struct {
			ID string `json:"id"`
		}
		if err := decodeBody(c, &req); err != nil {
			return err
		}
		if req.ID == "" {
			return invalidParam("id", "id of the node to remove is required")
		}
		if err := requireMember(c.UserContext(), cl, req.ID); err != nil {
			return err
		}
		if err := cl.Remove(c.UserContext(), req.ID); err != nil {
			return err
		}
		return c.JSON(fiber.Map{"removed": req.ID})
	})
	a.Get("/snapshot", func(c *fiber.Ctx) error {
		var buf bytes.Buffer
		if err := cl.SaveSnapshot(c.UserContext(), &buf); err != nil {
			return err
		}
		c.Set(fiber.HeaderContentType, "application/octet-stream")
		c.Set(fiber.HeaderContentDisposition, `attachment; filename="sovra-snapshot.json"`)
		return c.Send(buf.Bytes())
	})
	a.Post("/snapshot", func(c *fiber.Ctx) error {
		force := c.QueryBool("force", false)
		if err := cl.RestoreSnapshot(c.UserContext(), bytes.NewReader(c.Body()), force); err != nil {
			return err
		}
		return c.JSON(fiber.Map{"restored": true})
	})
	s.deploymentRoutes(a, cl)
	s.keyRoutes(a, cl)
	auditRoutes(a, cl)
	usageRoutes(a, cl)
	nextRoutes(a, raw)
}

// requireMember answers 404 for a node that is not in the raft
// configuration (removing it would do nothing).
func requireMember(ctx context.Context, cl Cluster, id string) error {
	st, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	for _, m := range st.Members {
		if m.ID == id {
			return nil
		}
	}
	return &Error{Status: http.StatusNotFound, Type: typeInvalid, Code: "not_found", Param: "id", Message: "no node " + cut(id) + " in the raft configuration"}
}

// Bounds of node labels.
const (
	maxLabels        = 64
	maxLabelKeyLen   = 63
	maxLabelValueLen = 256
)

// setNodeLabels sets the labels a node is placed by: the operator's word,
// whatever the node declares of itself.
func setNodeLabels(c *fiber.Ctx, cl Cluster) error {
	var req struct {
		Labels map[string]string `json:"labels"`
	}
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if len(req.Labels) > maxLabels {
		return invalidParam("labels", "at most %d labels", maxLabels)
	}
	for k, v := range req.Labels {
		if k == "" || len(k) > maxLabelKeyLen || len(v) > maxLabelValueLen {
			return invalidParam("labels", "label keys have 1 to %d bytes, values at most %d", maxLabelKeyLen, maxLabelValueLen)
		}
	}
	out, err := cl.Apply(c.UserContext(), state.Command{Type: state.TypeSetNodeLabels,
		Body: state.SetNodeLabels{ID: c.Params("id"), Labels: req.Labels}})
	if err != nil {
		return err
	}
	return c.Send(out.Value)
}

// joiningRoutes are the cluster routes of nodes without a cluster
// certificate yet, which prove the cluster token instead.
var joiningRoutes = map[string]bool{"/internal/v1/cluster/certify": true, "/internal/v1/cluster/peers": true}

// peerOrJoining lets a cluster call's body be read only when it comes from
// a peer (a certificate of the cluster CA), or over TLS to a route of
// joining nodes. The cluster's handler checks the caller again, fully.
func (s *Server) peerOrJoining(c *fiber.Ctx) error {
	st := c.Context().TLSConnectionState()
	ok := st != nil && joiningRoutes[c.Path()]
	if !ok && s.cfg.PeerID != nil {
		_, err := s.cfg.PeerID(st)
		ok = err == nil
	}
	if !ok {
		return &Error{Status: http.StatusForbidden, Type: "permission_error", Code: "not_peer",
			Message: "cluster routes need a client certificate of the cluster CA"}
	}
	return c.Next()
}
