package api

import (
	"testing"

	wire "github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cluster/state"
)

func TestPlacementViewReadsForPeople(t *testing.T) {
	up := &state.Node{ID: "a", Status: state.NodeReady}
	down := &state.Node{ID: "a", Status: state.NodeDown, StatusReason: "no heartbeat for 10s"}
	cases := []struct {
		name  string
		pl    state.Placement
		node  *state.Node
		check func(t *testing.T, pv wire.Placement)
	}{
		{"pulling", state.Placement{Node: "a", State: state.PlacementPulling, Progress: 0.09999999983742326, BytesDone: 100, BytesTotal: 1000}, up,
			func(t *testing.T, pv wire.Placement) {
				if pv.Progress != "10.0%" || pv.ProgressPercent == nil || *pv.ProgressPercent != 10 || pv.BytesDone != 100 || pv.BytesTotal != 1000 || pv.Ready {
					t.Fatalf("%+v", pv)
				}
			}},
		{"ready", state.Placement{Node: "a", State: state.PlacementReady}, up,
			func(t *testing.T, pv wire.Placement) {
				if !pv.Ready || pv.Progress != "" || pv.BytesTotal != 0 {
					t.Fatalf("%+v", pv)
				}
			}},
		{"ready on a down node", state.Placement{Node: "a", State: state.PlacementReady}, down,
			func(t *testing.T, pv wire.Placement) {
				if pv.Ready || pv.State != string(placementUnknown) || pv.Reported != string(state.PlacementReady) || pv.Reason == "" {
					t.Fatalf("%+v", pv)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { tc.check(t, newPlacementView(&tc.pl, tc.node)) })
	}
}
