package api

import (
	"net/http"

	"github.com/gofiber/fiber/v2"

	wire "github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/scheduler"
)

// nodeView is a node as GET /admin/v1/nodes/{id} shows it: with, while it
// drains, how far the drain has come.
type nodeView struct {
	state.Node
	// Drain tells an operator when a draining node may be stopped:
	// Complete once it holds no replica; Remaining lists the replicas
	// still on it, Blocked those that cannot move and why.
	Drain *wire.DrainReport `json:"drain,omitempty"`
}

// node answers GET /admin/v1/nodes/{id}.
func (d deployments) node(c *fiber.Ctx) error {
	id := c.Params("id")
	snap, err := d.snapshot(c)
	if err != nil {
		return err
	}
	n, ok := snap.Nodes[id]
	if !ok || n == nil {
		return &Error{Status: http.StatusNotFound, Type: typeInvalid, Code: "not_found", Param: "id", Message: "no node " + cut(id) + " in the cluster"}
	}
	v := nodeView{Node: *n}
	if n.Status == state.NodeDraining {
		v.Drain = drainOf(snap, id, newPlanView(snap, d.cl.SchedulerOptions()).plan)
	}
	return c.JSON(v)
}

// drainOf reports the replicas left on a draining node: each waits for a
// replacement to be ready elsewhere, or is blocked when the scheduler
// finds no node for one.
func drainOf(snap *state.State, id string, plan scheduler.Plan) *wire.DrainReport {
	r := &wire.DrainReport{Remaining: []wire.DrainRemaining{}, Blocked: []wire.DrainBlocked{}}
	for _, dep := range snap.DeploymentList() {
		pl := snap.Placement(dep.Name, id)
		if pl == nil {
			continue
		}
		rem := wire.DrainRemaining{Deployment: pl.Deployment, State: string(pl.State), Waiting: "a replacement to be ready elsewhere"}
		dp := plan.Deployment(pl.Deployment)
		switch {
		case dp == nil || dp.Placement(id) == nil:
			rem.Waiting = "its removal to be committed"
		case dp.Status != scheduler.StatusOK:
			r.Blocked = append(r.Blocked, wire.DrainBlocked{Deployment: pl.Deployment, Reason: string(dp.Status) + ": " + dp.Reason})
			rem.Waiting = "a node that can take it"
		}
		r.Remaining = append(r.Remaining, rem)
	}
	r.Complete = len(r.Remaining) == 0
	return r
}
