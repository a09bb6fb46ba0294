package node

import (
	"github.com/sovra/sovra/node/api"
	"github.com/sovra/sovra/node/quota"
)

// quotaConfig gives the API the limiter that enforces the API keys'
// limits across the cluster: each node admits against the usage its peers
// report in the load exchange (shareLoad) plus its own.
func (n *Node) quotaConfig(cfg *api.Config) {
	qc := quota.Config{Self: n.cfg.NodeID}
	if n.cluster != nil {
		qc.Nodes = func() int { return len(n.loadPeers()) + 1 }
	}
	n.quota = quota.New(qc)
	cfg.Quota = n.quota
}
