package node

import (
	"go.uber.org/zap"

	"github.com/sovra/sovra/node/ui"
)

// mountDashboard serves the web dashboard (package ui) at ui.Path on the
// API: its data comes from the admin API in process, its live updates
// from the changes of the replicated state. Only a cluster member has
// the admin API to show.
func (n *Node) mountDashboard() {
	m := n.cluster.Machine()
	d, err := ui.New(ui.Config{Admin: n.api.InProcess(), Changed: m.Changed, Index: m.Index,
		Secure: n.public != nil, Log: n.log.Named("ui")})
	if err != nil {
		n.log.Error("the dashboard cannot start; serving without it", zap.Error(err))
		return
	}
	d.Mount(n.api.App())
	n.dashboard = d
}

// closeDashboard ends the dashboard's live streams, which a graceful
// stop would otherwise wait for.
func (n *Node) closeDashboard() {
	if n.dashboard != nil {
		n.dashboard.Close()
	}
}
