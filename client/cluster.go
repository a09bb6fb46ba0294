package client

import (
	"context"
	"net/http"
	"net/url"
)

// ClusterStatus answers the node's view of the cluster.
func (c *Client) ClusterStatus(ctx context.Context) (*ClusterStatus, error) {
	var st ClusterStatus
	return &st, c.do(ctx, call{method: http.MethodGet, path: "/cluster"}, &st)
}

// Join adds a node to the raft configuration and registers it.
func (c *Client) Join(ctx context.Context, req JoinRequest) error {
	return c.do(ctx, call{method: http.MethodPost, path: "/cluster/join", body: req}, new(struct {
		Joined string `json:"joined"`
	}))
}

// Remove takes a node out of the raft configuration; one that is not in
// it: ErrNotFound.
func (c *Client) Remove(ctx context.Context, id string) error {
	return c.do(ctx, call{method: http.MethodPost, path: "/cluster/remove", body: map[string]string{"id": id}}, new(struct {
		Removed string `json:"removed"`
	}))
}

// SaveSnapshot returns a snapshot of the replicated state.
func (c *Client) SaveSnapshot(ctx context.Context) ([]byte, error) {
	return c.send(ctx, call{method: http.MethodGet, path: "/snapshot"})
}

// RestoreSnapshot replaces the cluster's state by a snapshot; without
// force the cluster refuses it (ErrConflict, code restore_not_forced),
// since it replaces everything the cluster holds.
func (c *Client) RestoreSnapshot(ctx context.Context, snapshot []byte, force bool) error {
	var q url.Values
	if force {
		q = url.Values{"force": {"true"}}
	}
	if snapshot == nil {
		snapshot = []byte{}
	}
	return c.do(ctx, call{method: http.MethodPost, path: "/snapshot", query: q, raw: snapshot}, new(struct {
		Restored bool `json:"restored"`
	}))
}

// Nodes lists the cluster's nodes.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var out struct {
		Nodes []Node `json:"nodes"`
	}
	err := c.do(ctx, call{method: http.MethodGet, path: "/nodes"}, &out)
	return out.Nodes, err
}

// Node returns one node, with its drain report while it drains.
func (c *Client) Node(ctx context.Context, id string) (*NodeView, error) {
	var n NodeView
	return &n, c.do(ctx, call{method: http.MethodGet, path: "/nodes/" + url.PathEscape(id)}, &n)
}

// SetNodeLabels sets the labels the scheduler places by on a node,
// replacing those it had.
func (c *Client) SetNodeLabels(ctx context.Context, id string, labels map[string]string) (*Node, error) {
	if labels == nil {
		labels = map[string]string{}
	}
	var n Node
	return &n, c.do(ctx, call{method: http.MethodPut, path: "/nodes/" + url.PathEscape(id) + "/labels",
		body: map[string]any{"labels": labels}}, &n)
}

// Cordon keeps new replicas off a node; those it runs stay.
func (c *Client) Cordon(ctx context.Context, id, reason string) (*Node, error) {
	return c.nodeStatus(ctx, id, "cordon", reason)
}

// Drain moves a node's replicas elsewhere, each once its replacement is
// ready; Node's drain report says when it is done.
func (c *Client) Drain(ctx context.Context, id, reason string) (*Node, error) {
	return c.nodeStatus(ctx, id, "drain", reason)
}

// Uncordon makes a cordoned or draining node ready.
func (c *Client) Uncordon(ctx context.Context, id, reason string) (*Node, error) {
	return c.nodeStatus(ctx, id, "uncordon", reason)
}

func (c *Client) nodeStatus(ctx context.Context, id, verb, reason string) (*Node, error) {
	k := call{method: http.MethodPost, path: "/nodes/" + url.PathEscape(id) + "/" + verb, idempotent: true}
	if reason != "" {
		k.body = map[string]string{"reason": reason}
	}
	var n Node
	return &n, c.do(ctx, k, &n)
}

// Routing answers the node's routing view: every ready replica with the
// load and health it routes by.
func (c *Client) Routing(ctx context.Context) (*RoutingView, error) {
	var v RoutingView
	return &v, c.do(ctx, call{method: http.MethodGet, path: "/routing"}, &v)
}
