package ui

import (
	"net/url"

	"github.com/sovra/sovra/client"
)

// deploymentView is a deployment's page: its replicas by node with their
// state, pull progress and load, and the scheduler's explanation.
type deploymentView struct {
	D        *client.Deployment
	Stale    bool
	Replicas []replicaRow
	Explain  *client.Explanation
	// Troubled opens the explanation: something is not placed as wanted.
	Troubled bool
	// Policy is the routing policy of this node.
	Policy string
}

// replicaRow is one replica, with the load this node routes it by (nil
// while the replica is not routed to).
type replicaRow struct {
	client.Placement
	Load *client.ReplicaView
}

func (u *UI) deployment(r *req) (view, error) {
	name, err := url.PathUnescape(r.c.Params("name"))
	if err != nil {
		return view{}, &client.Error{Status: 404, Message: "no such deployment"}
	}
	_, ctx, stale, err := clusterRead(r)
	if err != nil {
		return view{}, err
	}
	d, err := r.ac.Deployment(ctx, name)
	if err != nil {
		return view{}, err
	}
	e, err := r.ac.Explain(ctx, name)
	if err != nil {
		return view{}, err
	}
	rv, err := r.ac.Routing(r.ctx)
	if err != nil {
		return view{}, err
	}
	v := deploymentView{D: d, Stale: stale, Explain: e, Policy: rv.Policy,
		Troubled: d.Status != client.StatusOK && d.Status != client.StatusIdle}
	load := map[string]*client.ReplicaView{}
	for i := range rv.Replicas {
		if rv.Replicas[i].Deployment == d.Name {
			load[rv.Replicas[i].Node] = &rv.Replicas[i]
		}
	}
	for _, p := range d.Placements {
		v.Replicas = append(v.Replicas, replicaRow{Placement: p, Load: load[p.Node]})
	}
	return view{name: "deployment", title: "Deployment " + d.Name, nav: "overview", tick: true, data: v}, nil
}

// Note is what the replica's row says beside its figures: why it is in
// its state, and the pull's progress text unless the Pull column shows it.
func (r replicaRow) Note() string {
	if r.ProgressPercent != nil || r.BytesTotal > 0 || r.Progress == "" {
		return r.Reason
	}
	if r.Reason == "" {
		return r.Progress
	}
	return r.Progress + "; " + r.Reason
}

func deploymentLink(name string) string { return Path + "/deployments/" + url.PathEscape(name) }

func nodeLink(id string) string { return Path + "/nodes/" + url.PathEscape(id) }
