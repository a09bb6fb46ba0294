package ui

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"

	"github.com/gofiber/fiber/v2"

	"github.com/sovra/sovra/client"
)

// nodesView is the nodes page: every node with its labels, GPUs, models
// on disk, replicas and the status changes it allows.
type nodesView struct {
	Stale bool
	Nodes []nodeRow
}

// nodeRow is one node.
type nodeRow struct {
	client.Node
	// Member is the node's raft membership as this node sees it (nil
	// when it is not in the configuration).
	Member   *client.Member
	Leader   bool
	Replicas []nodeReplica
	// VRAM is the GPUs' memory in all.
	VRAM    uint64
	Actions []string
}

// nodeReplica is a replica on a node.
type nodeReplica struct {
	Deployment string
	client.Placement
}

// Node status changes, as the admin API names them.
const (
	actCordon   = "cordon"
	actDrain    = "drain"
	actUncordon = "uncordon"
)

// actionsOf are the status changes a node in status s allows.
func actionsOf(s string) []string {
	switch s {
	case client.NodeReady:
		return []string{actCordon, actDrain}
	case client.NodeCordoned:
		return []string{actDrain, actUncordon}
	case client.NodeDraining:
		return []string{actUncordon}
	}
	return nil
}

// verbText says what an action does, for its confirmation.
func verbText(action string) string {
	switch action {
	case actCordon:
		return "Cordoning keeps new replicas off the node; the replicas it runs stay and keep serving."
	case actDrain:
		return "Draining moves the node's replicas to other nodes, each once its replacement is ready, and keeps new ones off."
	case actUncordon:
		return "Uncordoning makes the node take replicas again (a drain in progress stops)."
	}
	return ""
}

func (u *UI) nodes(r *req) (view, error) {
	rows, stale, err := u.nodeRows(r)
	if err != nil {
		return view{}, err
	}
	return view{name: "nodes", title: "Nodes", nav: "nodes", data: nodesView{Stale: stale, Nodes: rows}}, nil
}

// nodeRows gathers every node with its membership and replicas.
func (u *UI) nodeRows(r *req) ([]nodeRow, bool, error) {
	st, ctx, stale, err := clusterRead(r)
	if err != nil {
		return nil, false, err
	}
	nodes, err := r.ac.Nodes(ctx)
	if err != nil {
		return nil, false, err
	}
	deps, err := r.ac.Deployments(ctx)
	if err != nil {
		return nil, false, err
	}
	return rowsOf(sortedNodes(nodes), st, deps), stale, nil
}

func rowsOf(nodes []client.Node, st *client.ClusterStatus, deps []client.Deployment) []nodeRow {
	out := make([]nodeRow, 0, len(nodes))
	for _, n := range nodes {
		row := nodeRow{Node: n, Leader: st.Leader == n.ID, Actions: actionsOf(n.Status)}
		for i := range st.Members {
			if st.Members[i].ID == n.ID {
				row.Member = &st.Members[i]
			}
		}
		for _, g := range n.GPUs {
			row.VRAM += g.MemoryBytes
		}
		for _, d := range deps {
			for _, p := range d.Placements {
				if p.Node == n.ID {
					row.Replicas = append(row.Replicas, nodeReplica{Deployment: d.Name, Placement: p})
				}
			}
		}
		out = append(out, row)
	}
	return out
}

// nodeView is one node's page.
type nodeView struct {
	Row   nodeRow
	Drain *client.DrainReport
	Stale bool
	// Done names the status change just made.
	Done string
}

func (u *UI) node(r *req) (view, error) {
	id, err := url.PathUnescape(r.c.Params("id"))
	if err != nil {
		return view{}, &client.Error{Status: fiber.StatusNotFound, Message: "no such node"}
	}
	rows, stale, err := u.nodeRows(r)
	if err != nil {
		return view{}, err
	}
	nv, err := r.ac.Node(readContext(r, stale), id)
	if err != nil {
		return view{}, err
	}
	v := nodeView{Drain: nv.Drain, Stale: stale, Row: nodeRow{Node: nv.Node, Actions: actionsOf(nv.Status)}}
	for _, row := range rows {
		if row.ID == id {
			v.Row = row
			v.Row.Node = nv.Node
			v.Row.Actions = actionsOf(nv.Status)
		}
	}
	if d := r.c.Query("done"); slices.Contains([]string{actCordon, actDrain, actUncordon}, d) {
		v.Done = d
	}
	return view{name: "node", title: "Node " + id, nav: "nodes", data: v}, nil
}

// readContext is the context of a page's state reads (see clusterRead).
func readContext(r *req, stale bool) context.Context {
	if stale {
		return client.Stale(r.ctx)
	}
	return r.ctx
}

// confirmView is the confirmation of a node's status change.
type confirmView struct {
	Node   client.Node
	Action string
	CSRF   string
	Reason string
	Error  string
}

// nodeAction reads the node and the action of a confirmation request.
func nodeAction(r *req) (string, string, error) {
	id, err := url.PathUnescape(r.c.Params("id"))
	action := r.c.Params("action")
	if err != nil || verbText(action) == "" {
		return "", "", &client.Error{Status: fiber.StatusNotFound, Message: "no such page"}
	}
	return id, action, nil
}

// confirmAction asks the operator to confirm a status change (a GET
// changes nothing).
func (u *UI) confirmAction(r *req) (view, error) {
	id, action, err := nodeAction(r)
	if err != nil {
		return view{}, err
	}
	nv, err := r.ac.Node(r.ctx, id)
	if err != nil {
		return view{}, err
	}
	v := confirmView{Node: nv.Node, Action: action, CSRF: r.s.csrf}
	return view{name: "confirm", title: strings.ToUpper(action[:1]) + action[1:] + " " + id, nav: "nodes", still: true, data: v}, nil
}

// nodeAction makes a confirmed status change through the admin API (which
// audits it under the session's credential) and shows the node.
func (u *UI) nodeAction(r *req) error {
	id, action, err := nodeAction(r)
	if err != nil {
		return u.pageError(r, err)
	}
	form, err := readForm(r.c)
	if err != nil {
		return u.pageError(r, err)
	}
	reason := strings.TrimSpace(form.Get("reason"))
	if len(reason) > 256 {
		reason = reason[:256]
	}
	do := map[string]func(context.Context, string, string) (*client.Node, error){
		actCordon: r.ac.Cordon, actDrain: r.ac.Drain, actUncordon: r.ac.Uncordon,
	}[action]
	n, err := do(r.ctx, id, reason)
	var ce *client.Error
	if err != nil && errors.As(err, &ce) && ce.Status != fiber.StatusUnauthorized && ce.Status != fiber.StatusForbidden {
		v := confirmView{Node: client.Node{ID: id}, Action: action, CSRF: r.s.csrf, Reason: reason, Error: ce.Message}
		if nv, nerr := r.ac.Node(r.ctx, id); nerr == nil {
			v.Node = nv.Node
		}
		return u.write(r.c.Status(ce.Status), "confirm", layout{Title: "Could not " + action + " " + id, Nav: "nodes",
			Who: r.s.who, CSRF: r.s.csrf, Rendered: u.cfg.Now(), Assets: u.assets.URL, Page: v})
	}
	if err != nil {
		return u.pageError(r, err)
	}
	return r.c.Redirect(nodeLink(n.ID)+"?done="+action, fiber.StatusSeeOther)
}
