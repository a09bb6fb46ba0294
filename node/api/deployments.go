package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	wire "github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/models"
	"github.com/sovra/sovra/scheduler"
)

// MaxReplicas bounds a deployment's replica count: one replica per node,
// and no cluster is larger.
const MaxReplicas = 1000

// scaleAttempts bounds the read-modify-write rounds of a scale that keeps
// meeting concurrent writes.
const scaleAttempts = 5

// Headers of idempotent admin writes.
const (
	headerIdempotencyKey = "Idempotency-Key"
	headerReplayed       = "Idempotent-Replayed"
	maxIdempotencyKey    = 256
)

// deploymentName is what a deployment may be called: lower-case letters,
// digits and . _ : - , starting and ending with a letter or digit.
var deploymentName = regexp.MustCompile(`^[a-z0-9]([a-z0-9._:-]{0,62}[a-z0-9])?$`)

// deploymentRoutes mounts the deployment, catalog and node status routes on
// the admin group.
func (s *Server) deploymentRoutes(a fiber.Router, cl Cluster) {
	s.catalogRoutes(a, cl)
	d := deployments{cl: cl}
	if ph, ok := s.be.(peerHealth); ok {
		d.gone = ph.PeerUnhealthy
	}
	a.Post("/deployments", d.create)
	a.Get("/deployments", d.list)
	a.Get("/deployments/:name", d.get)
	a.Delete("/deployments/:name", d.remove)
	a.Post("/deployments/:name/scale", d.scale)
	a.Patch("/deployments/:name/scale", d.scale)
	a.Get("/deployments/:name/explain", d.explain)
	a.Get("/nodes/:id", d.node)
	a.Post("/nodes/:id/cordon", d.setNodeStatus(state.NodeCordoned))
	a.Post("/nodes/:id/drain", d.setNodeStatus(state.NodeDraining))
	a.Post("/nodes/:id/uncordon", d.setNodeStatus(state.NodeReady))
}

// deployments serves the deployment routes over the cluster.
type deployments struct {
	cl Cluster
	// gone says whether this node has heard nothing from a node lately
	// (nil: it cannot tell).
	gone func(node string) bool
}

// deploymentRequest is the body of POST /admin/v1/deployments.
type deploymentRequest struct {
	Name        string   `json:"name"`
	Model       string   `json:"model"`
	Replicas    *int     `json:"replicas"` // default 1
	Constraints []string `json:"constraints"`
	Priority    int      `json:"priority"`
	SpreadBy    string   `json:"spread_by"`
	// IdleTimeout lets the deployment go idle (no replicas) when no
	// request used it that long: a duration string ("10m", "1h30m") or a
	// number of seconds; whole seconds, at least 1s. Absent or 0: never.
	IdleTimeout json.RawMessage `json:"idle_timeout"`
}

// Bounds of a deployment's constraints: how many, and the bytes of each
// (a label key and value with an operator).
const (
	maxConstraints = 64
	maxConstraint  = maxLabelKeyLen + maxLabelValueLen + 8
)

// maxIdleTimeout bounds a deployment's idle timeout.
const maxIdleTimeout = 365 * 24 * time.Hour

// parseIdleTimeout reads idle_timeout: a duration string or seconds.
func parseIdleTimeout(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, nil
	}
	bad := func() error {
		return invalidParam("idle_timeout", "idle_timeout %s: give a duration such as \"10m\" or a number of seconds, 0 or from 1s to %v, whole seconds", cut(string(raw)), maxIdleTimeout)
	}
	var d time.Duration
	var secs float64
	var text string
	switch {
	case json.Unmarshal(raw, &secs) == nil:
		if secs != float64(int64(secs)) || secs < 0 || secs > maxIdleTimeout.Seconds() {
			return 0, bad()
		}
		d = time.Duration(secs) * time.Second
	case json.Unmarshal(raw, &text) == nil:
		var err error
		if d, err = time.ParseDuration(strings.TrimSpace(text)); err != nil {
			return 0, bad()
		}
	default:
		return 0, bad()
	}
	if d < 0 || d > maxIdleTimeout || d%time.Second != 0 {
		return 0, bad()
	}
	return d, nil
}

// The admin API shows deployments, their replicas and drains as the
// client package's wire types (client.Deployment, client.Placement,
// client.DrainReport): the server builds them, so the two cannot drift.

// newDeploymentView is a deployment as the admin API shows it, before its
// placements and the scheduler's verdict are added.
func newDeploymentView(dep state.Deployment) wire.Deployment {
	return wire.Deployment{
		Name: dep.Name, Model: dep.Model, Replicas: dep.Replicas, Constraints: dep.Constraints, Priority: dep.Priority,
		SpreadBy: dep.SpreadBy, IdleTimeout: dep.IdleTimeout, Version: dep.Version, CreatedIndex: dep.CreatedIndex,
		ModifiedIndex: dep.ModifiedIndex, Placements: []wire.Placement{}, Idle: dep.Idle, LastUsed: dep.LastUsed, UsedIndex: dep.UsedIndex,
	}
}

func (d deployments) create(c *fiber.Ctx) error {
	var req deploymentRequest
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	dep, err := req.deployment()
	if err != nil {
		return err
	}
	key, err := idempotencyKey(c, "create-deployment")
	if err != nil {
		return err
	}
	out, err := d.cl.Apply(c.UserContext(), state.Command{Type: state.TypePutDeployment, Key: key,
		Body: state.PutDeployment{Deployment: dep, Create: true, Time: time.Now().UnixMilli()}})
	if err != nil {
		return err
	}
	var got state.Deployment
	if err := json.Unmarshal(out.Value, &got); err != nil {
		return fmt.Errorf("deployment outcome: %w", err)
	}
	markReplayed(c, out)
	view := newDeploymentView(got)
	opts := d.cl.SchedulerOptions()
	known := true
	if err := d.cl.Read(c.UserContext(), true, func(s *state.State) { known = modelKnown(got.Model, opts, s) }); err != nil {
		return err
	}
	if !known {
		view.Status, view.Reason = string(scheduler.StatusInvalid), scheduler.FiguresUnknown(got.Model)
	}
	return c.Status(http.StatusCreated).JSON(view)
}

// deployment checks the request and returns the deployment it asks for.
func (r deploymentRequest) deployment() (state.Deployment, error) {
	d := state.Deployment{Name: r.Name, Model: strings.TrimSpace(r.Model), Replicas: 1, Priority: r.Priority, SpreadBy: strings.TrimSpace(r.SpreadBy)}
	if r.Replicas != nil {
		d.Replicas = *r.Replicas
	}
	if !deploymentName.MatchString(d.Name) {
		return d, invalidParam("name", "deployment name %q: use 1 to 64 lower-case letters, digits and . _ : -, starting and ending with a letter or digit", cut(d.Name))
	}
	if err := checkModel(d.Model); err != nil {
		return d, err
	}
	if err := checkReplicas(d.Replicas); err != nil {
		return d, err
	}
	idle, err := parseIdleTimeout(r.IdleTimeout)
	if err != nil {
		return d, err
	}
	d.IdleTimeout = int64(idle / time.Second)
	if len(r.Constraints) > maxConstraints {
		return d, invalidParam("constraints", "at most %d constraints", maxConstraints)
	}
	for _, s := range r.Constraints {
		if len(s) > maxConstraint {
			return d, invalidParam("constraints", "a constraint has at most %d bytes", maxConstraint)
		}
		d.Constraints = append(d.Constraints, strings.TrimSpace(s))
	}
	if _, err := scheduler.ParseConstraints(d.Constraints); err != nil {
		return d, invalidParam("constraints", "%v", err)
	}
	return d, checkSpreadBy(d.SpreadBy)
}

// checkModel checks the model name of a deployment. A model neither built
// in nor registered is accepted: its deployment waits, with the reason
// "model figures unknown", until an operator registers the model or a node
// that has it reads its figures from Ollama.
func checkModel(model string) error {
	switch {
	case model == "":
		return invalidParam("model", "model is required: the Ollama tag to serve, e.g. \"qwen2.5:7b\"")
	case len(model) > 256:
		return invalidParam("model", "model name is longer than 256 characters")
	}
	if _, err := models.NormalizeName(model); err != nil {
		return invalidParam("model", "%v", err)
	}
	return nil
}

func checkReplicas(n int) error {
	if n < 0 || n > MaxReplicas {
		return invalidParam("replicas", "replicas must be between 0 and %d, got %d", MaxReplicas, n)
	}
	return nil
}

// checkSpreadBy accepts an empty value or a node label key.
func checkSpreadBy(key string) error {
	if key == "" {
		return nil
	}
	c, err := scheduler.ParseConstraint(key)
	if err != nil || len(key) > maxLabelKeyLen || c.Op != scheduler.OpExists || c.Key != key || strings.HasPrefix(key, "gpu.") {
		return invalidParam("spread_by", "spread_by %q is not a node label key (up to 63 letters, digits and . _ / -)", cut(key))
	}
	return nil
}

// idempotencyKey returns the state command key for the request's
// Idempotency-Key header, scoped to the operation, or "" without one.
func idempotencyKey(c *fiber.Ctx, op string) (string, error) {
	k := c.Get(headerIdempotencyKey)
	switch {
	case k == "":
		return "", nil
	case len(k) > maxIdempotencyKey:
		return "", invalidParam(headerIdempotencyKey, "the Idempotency-Key header is longer than %d characters", maxIdempotencyKey)
	}
	return "admin/" + op + "/" + k, nil
}

// markReplayed tells the client that its idempotency key had been seen
// and the answer is the first request's.
func markReplayed(c *fiber.Ctx, out state.Outcome) {
	if out.Replayed {
		c.Set(headerReplayed, "true")
	}
}

func (d deployments) list(c *fiber.Ctx) error {
	snap, err := d.snapshot(c)
	if err != nil {
		return err
	}
	p := newPlanView(snap, d.cl.SchedulerOptions())
	out := make([]wire.Deployment, 0, len(snap.Deployments))
	for _, dep := range snap.DeploymentList() {
		out = append(out, p.view(snap, dep))
	}
	return c.JSON(fiber.Map{"deployments": out})
}

func (d deployments) get(c *fiber.Ctx) error {
	name := c.Params("name")
	snap, err := d.snapshot(c)
	if err != nil {
		return err
	}
	dep, ok := snap.Deployments[name]
	if !ok {
		return noDeployment(name)
	}
	return c.JSON(newPlanView(snap, d.cl.SchedulerOptions()).view(snap, dep))
}

func noDeployment(name string) *Error {
	return &Error{Status: http.StatusNotFound, Type: typeInvalid, Code: "not_found", Param: "name", Message: "no deployment " + cut(name) + " in the cluster"}
}

// snapshot is the state the views show: read as the request asks, with
// what this node knows of its peers' liveness laid over it.
func (d deployments) snapshot(c *fiber.Ctx) (*state.State, error) {
	snap, err := readSnapshot(c.UserContext(), d.cl, c.QueryBool("stale"))
	if err == nil {
		overlay(snap, d.gone)
	}
	return snap, err
}

// readSnapshot copies the state: linearizable unless stale.
func readSnapshot(ctx context.Context, cl Cluster, stale bool) (*state.State, error) {
	var snap *state.State
	err := cl.Read(ctx, stale, func(s *state.State) { snap = s.Clone() })
	return snap, err
}

// planView is the scheduler's plan over a snapshot, indexed for views.
type planView struct {
	plan     scheduler.Plan
	changed  map[string][]string
	removing map[string]bool // deployment \x00 node
}

func newPlanView(snap *state.State, opts scheduler.Options) planView {
	p := planView{plan: scheduler.Schedule(snap, opts), removing: map[string]bool{}}
	p.changed = p.plan.SetPlacements().Deployments
	for _, r := range p.plan.Removals {
		p.removing[r.Deployment+"\x00"+r.Node] = true
	}
	for _, e := range p.plan.Evictions {
		p.removing[e.Deployment+"\x00"+e.Node] = true
	}
	return p
}

func (p planView) view(snap *state.State, dep *state.Deployment) wire.Deployment {
	v := newDeploymentView(*dep)
	_, moving := p.changed[dep.Name]
	v.Settled = !moving
	dp := p.plan.Deployment(dep.Name)
	if dp == nil {
		dp = &scheduler.DeploymentPlan{}
	}
	v.Status, v.Reason = string(dp.Status), dp.Reason
	for _, pl := range snap.PlacementsOf(dep.Name) {
		pv := newPlacementView(pl, snap.Nodes[pl.Node])
		switch a := dp.Placement(pl.Node); {
		case p.removing[dep.Name+"\x00"+pl.Node]:
			pv.Action = "remove"
		case a != nil:
			pv.Action = string(a.Action)
		}
		if pv.Ready {
			v.ReadyReplicas++
		}
		v.Placements = append(v.Placements, pv)
	}
	if !dep.Idle {
		readiness(&v)
	}
	return v
}

func (d deployments) remove(c *fiber.Ctx) error {
	name := c.Params("name")
	key, err := idempotencyKey(c, "delete-deployment/"+name)
	if err != nil {
		return err
	}
	out, err := d.cl.Apply(c.UserContext(), state.Command{Type: state.TypeDeleteDeployment, Key: key, Body: state.DeleteDeployment{Name: name}})
	if errors.Is(err, state.ErrNotFound) {
		return noDeployment(name)
	}
	if err != nil {
		return err
	}
	markReplayed(c, out)
	return c.JSON(fiber.Map{"deleted": name})
}

// scale sets a deployment's replica count: a read-modify-write conditioned
// on the version read, repeated when another write came in between.
func (d deployments) scale(c *fiber.Ctx) error {
	var req struct {
		Replicas *int `json:"replicas"`
	}
	if err := decodeBody(c, &req); err != nil {
		return err
	}
	if req.Replicas == nil {
		return invalidParam("replicas", "replicas is required")
	}
	if err := checkReplicas(*req.Replicas); err != nil {
		return err
	}
	name := c.Params("name")
	key, err := idempotencyKey(c, "scale-deployment/"+name)
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		dep, out, err := d.scaleOnce(c.UserContext(), name, *req.Replicas, key)
		if errors.Is(err, state.ErrConflict) && attempt < scaleAttempts {
			continue
		}
		if err != nil {
			return err
		}
		markReplayed(c, out)
		return d.answer(c, dep)
	}
}

// scaleOnce reads the deployment and writes it back with the new count,
// on condition that its version has not moved. A deployment already at
// the count is left alone.
func (d deployments) scaleOnce(ctx context.Context, name string, replicas int, key string) (state.Deployment, state.Outcome, error) {
	var cur *state.Deployment
	err := d.cl.Read(ctx, false, func(s *state.State) {
		if dep, ok := s.Deployments[name]; ok {
			cp := *dep
			cp.Constraints = append([]string(nil), dep.Constraints...)
			cur = &cp
		}
	})
	switch {
	case err != nil:
		return state.Deployment{}, state.Outcome{}, err
	case cur == nil:
		return state.Deployment{}, state.Outcome{}, noDeployment(name)
	case cur.Replicas == replicas:
		return *cur, state.Outcome{}, nil
	}
	next := *cur
	next.Replicas = replicas
	if key != "" {
		key = fmt.Sprintf("%s@%d", key, cur.Version)
	}
	out, err := d.cl.Apply(ctx, state.Command{Type: state.TypePutDeployment, Key: key,
		Body: state.PutDeployment{Deployment: next, IfVersion: cur.Version, Time: time.Now().UnixMilli()}})
	if err != nil {
		return state.Deployment{}, out, err
	}
	var got state.Deployment
	if err := json.Unmarshal(out.Value, &got); err != nil {
		return state.Deployment{}, out, fmt.Errorf("deployment outcome: %w", err)
	}
	return got, out, nil
}

// answer sends a deployment just written, with its placements as this
// node's state holds them.
func (d deployments) answer(c *fiber.Ctx, dep state.Deployment) error {
	snap, err := readSnapshot(c.UserContext(), d.cl, true)
	if err != nil {
		return err
	}
	overlay(snap, d.gone)
	if cur, ok := snap.Deployments[dep.Name]; ok && cur.Version >= dep.Version {
		return c.JSON(newPlanView(snap, d.cl.SchedulerOptions()).view(snap, cur))
	}
	return c.JSON(newDeploymentView(dep))
}

// explain runs the scheduler over the state for one deployment and says
// what it made of every node; ?format=text gives the terminal rendering.
func (d deployments) explain(c *fiber.Ctx) error {
	name := c.Params("name")
	snap, err := d.snapshot(c)
	if err != nil {
		return err
	}
	opts := d.cl.SchedulerOptions()
	e := scheduler.Explain(snap, name, opts)
	if errors.Is(e.Err, scheduler.ErrUnknownDeployment) {
		return noDeployment(name)
	}
	v := newPlanView(snap, opts).view(snap, snap.Deployments[name])
	e.Status, e.Reason = scheduler.Status(v.Status), v.Reason
	if c.Query("format") == "text" {
		return c.SendString(e.String())
	}
	return c.JSON(struct {
		scheduler.Explanation
		Text string `json:"text"`
	}{e, e.String()})
}

// setNodeStatus cordons, drains or uncordons a node. Cordoned and
// draining nodes take no new replicas; a cordoned node keeps those it
// runs, a draining one's move elsewhere, each leaving once a replacement
// is ready (GET /admin/v1/nodes/{id} says when the drain is complete). Uncordon makes a cordoned or
// draining node ready; a down node becomes ready by its heartbeats only.
func (d deployments) setNodeStatus(to state.NodeStatus) fiber.Handler {
	return func(c *fiber.Ctx) error {
		id := c.Params("id")
		reason, err := statusReason(c, to)
		if err != nil {
			return err
		}
		if to == state.NodeReady {
			n, err := d.uncordonable(c.UserContext(), id)
			if err != nil {
				return err
			}
			if n != nil {
				return c.JSON(n)
			}
		}
		key, err := idempotencyKey(c, "node-status/"+id+"/"+string(to))
		if err != nil {
			return err
		}
		out, err := d.cl.Apply(c.UserContext(), state.Command{Type: state.TypeSetNodeStatus, Key: key,
			Body: state.SetNodeStatus{ID: id, Status: to, Reason: reason, Time: time.Now().UnixMilli()}})
		if err != nil {
			return err
		}
		markReplayed(c, out)
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Send(out.Value)
	}
}

// statusReason reads the optional {"reason": ...} of a node status change.
func statusReason(c *fiber.Ctx, to state.NodeStatus) (string, error) {
	var req struct {
		Reason string `json:"reason"`
	}
	if len(c.Body()) > 0 {
		if err := decodeBody(c, &req); err != nil {
			return "", err
		}
	}
	if req.Reason == "" {
		return string(to) + " by an operator", nil
	}
	return req.Reason, nil
}

// uncordonable checks that a node may be uncordoned. It returns the node
// when there is nothing to do (it is ready already).
func (d deployments) uncordonable(ctx context.Context, id string) (*state.Node, error) {
	var node *state.Node
	if err := d.cl.Read(ctx, false, func(s *state.State) {
		if n, ok := s.Nodes[id]; ok {
			cp := *n
			node = &cp
		}
	}); err != nil {
		return nil, err
	}
	switch {
	case node == nil:
		return nil, &Error{Status: http.StatusNotFound, Type: typeInvalid, Code: "not_found", Param: "id", Message: "no node " + cut(id) + " in the cluster"}
	case node.Status == state.NodeReady:
		return node, nil
	case node.Status == state.NodeDown:
		return nil, &Error{Status: http.StatusConflict, Type: typeInvalid, Code: "node_down", Param: "id",
			Message: "node " + cut(id) + " is down; it becomes ready when its heartbeats resume"}
	}
	return nil, nil
}
