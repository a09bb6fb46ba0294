package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
)

func (g *globals) operatorCmd() *cobra.Command {
	c := group(&cobra.Command{
		Use:   "operator",
		Short: "Low-level cluster operations: the raft configuration",
	})
	raft := group(&cobra.Command{
		Use:   "raft",
		Short: "List and remove the servers of the raft configuration",
		Long: `The raft configuration: the servers that vote on (or follow) the replicated
state. A node's id is its raft server id.`,
	})
	raft.AddCommand(g.listPeersCmd(), g.removePeerCmd())
	c.AddCommand(raft)
	return c
}

// RaftPeer is a server of the raft configuration as `sovra operator raft
// list-peers` shows it.
type RaftPeer struct {
	// ID is the node's id, which is its raft server id.
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
	// State is leader or follower; unknown while there is no leader.
	State string `json:"state"`
	Voter bool   `json:"voter"`
	// Status is the node's status as the answering node can tell.
	Status string `json:"status"`
}

func (g *globals) listPeersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list-peers",
		Short: "List the raft configuration's servers: address, leader or follower, voter",
		Args:  noArgs,
		RunE: g.call(func(ctx context.Context, cl *client.Client, _ []string) error {
			st, err := cl.ClusterStatus(ctx)
			if err != nil {
				return err
			}
			peers := raftPeers(st)
			return g.print(peers, func(t *table) {
				t.head("NODE", "RAFT ADDRESS", "STATE", "VOTER", "STATUS", "+HTTP ADDRESS")
				for _, p := range peers {
					t.row(p.ID, p.RaftAddr, p.State, yesNo(p.Voter), p.Status, p.HTTPAddr)
				}
			})
		}),
	}
}

func raftPeers(st *client.ClusterStatus) []RaftPeer {
	peers := make([]RaftPeer, 0, len(st.Members))
	for _, m := range st.Members {
		p := RaftPeer{ID: m.ID, RaftAddr: m.RaftAddr, HTTPAddr: m.HTTPAddr, State: "follower", Voter: m.Voter, Status: m.Status}
		switch {
		case st.Leader == "":
			p.State = "unknown"
		case m.ID == st.Leader:
			p.State = "leader"
		}
		peers = append(peers, p)
	}
	return peers
}

func (g *globals) removePeerCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "remove-peer ID",
		Short: "Remove a server from the raft configuration (and its node from the state)",
		Long: `Remove a server from the raft configuration, and its node from the cluster's
state: for a server gone for good (a dead host), so that it no longer counts
towards the majority. The change itself needs a majority of the servers now
in the configuration. Drain a live node first (sovra node drain), then stop
its process before removing it: a node still running with join addresses
joins again.`,
		Args: exactArgs(1),
		RunE: g.call(func(ctx context.Context, cl *client.Client, args []string) error {
			return g.removeMember(ctx, cl, args[0], true)
		}),
	}
}
