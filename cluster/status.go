package cluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/sovra/sovra/cluster/state"
)

// Member is one server of the raft configuration.
type Member struct {
	ID       string `json:"id"`
	HTTPAddr string `json:"http_addr"`
	RaftAddr string `json:"raft_addr"`
	Voter    bool   `json:"voter"`
	// Status is the node's status as this node can tell: the status in
	// the state ("ready", "down", ...), "joining" before its registration
	// is applied, "unknown" for the other members while there is no leader
	// (nobody can update the state, so it may be stale), and "down" on
	// the leader for a member silent past DownAfter that the state still
	// calls ready.
	Status string `json:"status"`
	// StateStatus is the status in the replicated state, when Status
	// differs from it.
	StateStatus string `json:"state_status,omitempty"`
}

// Status is this node's view of the cluster.
type Status struct {
	Self         string   `json:"self"`
	Leader       string   `json:"leader"` // node id; empty while there is none
	Term         uint64   `json:"term"`
	AppliedIndex uint64   `json:"applied_index"` // of the local state
	Members      []Member `json:"members"`
	// While there is no leader: the last leader this node saw, since
	// when it has seen none, and when it last heard from a leader.
	LastLeader    string     `json:"last_leader,omitempty"`
	NoLeaderSince *time.Time `json:"no_leader_since,omitempty"`
	LastContact   *time.Time `json:"last_contact,omitempty"`
	// Warning says in words what is wrong, for an operator.
	Warning string `json:"warning,omitempty"`
}

// leaderMark is the leader as this node last saw it.
type leaderMark struct {
	id     string
	lostAt time.Time // zero while id leads
}

// trackLeader records leader changes: who led last and since when there
// has been no leader.
func (c *Cluster) trackLeader(now time.Time) {
	_, id := c.raft.LeaderWithID()
	old := c.leader.Load()
	switch {
	case id != "" && (old == nil || old.id != string(id) || !old.lostAt.IsZero()):
		c.leader.Store(&leaderMark{id: string(id)})
	case id == "" && old == nil:
		c.leader.Store(&leaderMark{lostAt: now})
	case id == "" && old.lostAt.IsZero():
		c.leader.Store(&leaderMark{id: old.id, lostAt: now})
	}
}

// Status answers locally on every node, without a round trip.
func (c *Cluster) Status(ctx context.Context) (Status, error) {
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}
	conf, err := c.configuration()
	if err != nil {
		return Status{}, err
	}
	c.trackLeader(time.Now())
	_, leader := c.raft.LeaderWithID()
	st := Status{Self: c.cfg.NodeID, Leader: string(leader), Term: c.raft.CurrentTerm(), AppliedIndex: c.machine.Index()}
	if leader == "" {
		c.noLeader(&st)
	}
	for _, err := range []error{c.JoinError(), c.disk.err()} {
		if err != nil {
			st.Warning = strings.TrimPrefix(st.Warning+"; "+err.Error(), "; ")
		}
	}
	c.machine.Read(func(s *state.State) {
		for _, srv := range conf.Servers {
			st.Members = append(st.Members, c.member(s, srv, leader != ""))
		}
	})
	sort.Slice(st.Members, func(i, j int) bool { return st.Members[i].ID < st.Members[j].ID })
	return st, nil
}

// noLeader fills in what a leaderless node can say.
func (c *Cluster) noLeader(st *Status) {
	since := "for a moment"
	if m := c.leader.Load(); m != nil {
		st.LastLeader = m.id
		t := m.lostAt.UTC()
		st.NoLeaderSince = &t
		since = fmt.Sprintf("since %s (%s)", t.Format(time.RFC3339), time.Since(t).Round(time.Second))
	}
	if t := c.raft.LastContact(); !t.IsZero() {
		t = t.UTC()
		st.LastContact = &t
	}
	last := st.LastLeader
	if last == "" {
		last = "none seen"
	}
	st.Warning = fmt.Sprintf("no leader %s; last leader %s: the cluster cannot change or confirm its state "+
		"(a majority of voters is unreachable or an election is under way), so the other members' status is unknown", since, last)
}

// member is one server as this node can tell.
func (c *Cluster) member(s *state.State, srv raft.Server, haveLeader bool) Member {
	m := Member{ID: string(srv.ID), RaftAddr: string(srv.Address), Voter: srv.Suffrage == raft.Voter, Status: "joining"}
	n, ok := s.Nodes[m.ID]
	if !ok {
		m.HTTPAddr = c.peers.get(m.ID).HTTPAddr
		return m
	}
	m.HTTPAddr, m.Status = n.HTTPAddr, string(n.Status)
	switch {
	case m.ID == c.cfg.NodeID:
	case !haveLeader:
		m.Status, m.StateStatus = "unknown", string(n.Status)
	case n.Status == state.NodeReady && c.IsLeader() && time.Since(c.live.lastSeen(m.ID)) > c.cfg.DownAfter:
		m.Status, m.StateStatus = string(state.NodeDown), string(n.Status)
	}
	return m
}
