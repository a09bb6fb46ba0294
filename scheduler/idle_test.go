package scheduler

import (
	"errors"
	"testing"

	"github.com/sovra/sovra/cluster/state"
)

func TestIdleDeploymentWantsNoReplicas(t *testing.T) {
	idleTimeout := func(d *state.Deployment) { d.IdleTimeout = 60 }
	cases := []struct {
		name  string
		state state.PlacementState
	}{
		{name: "ready replicas leave", state: state.PlacementReady},
		{name: "loading replicas leave", state: state.PlacementLoading},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.node("n1", gpus(a100, 1))
			w.node("n2", gpus(a100, 1))
			w.deploy("chat", "llama3.1:8b", 2, idleTimeout)
			w.deploy("other", "llama3.1:8b", 1)
			w.commit(w.schedule(opts()), tc.state)
			if got := len(w.s.PlacementsOf("chat")); got != 2 {
				t.Fatalf("%d replicas before going idle, want 2", got)
			}
			w.apply(state.TypeSetDeploymentIdle, state.SetDeploymentIdle{Name: "chat", Idle: true, Time: now.UnixMilli(), UnusedSince: w.s.Deployments["chat"].LastUsed})

			p := w.schedule(opts())
			got, d := nodesOf(t, p, "chat")
			if len(got) != 0 || d.Status != StatusIdle || !d.Idle || d.Reason == "" {
				t.Fatalf("idle deployment: nodes %v, status %s %q, idle %v; want none, idle", got, d.Status, d.Reason, d.Idle)
			}
			if n := len(p.Removals); n != 2 || p.Removals[0].Cause != CauseIdle {
				t.Fatalf("removals %+v, want both replicas of chat removed as idle", p.Removals)
			}
			if _, o := nodesOf(t, p, "other"); o.Status != StatusOK || len(o.Placements) != 1 {
				t.Fatalf("the other deployment was touched: %+v", o)
			}
			w.commit(p, "")
			if again := w.schedule(opts()); len(again.SetPlacements().Deployments) != 0 {
				t.Fatalf("idle plan is not stable: %+v", again.SetPlacements())
			}

			// A plan made before the deployment woke is stale once it has.
			stale := w.schedule(opts())
			w.apply(state.TypeSetDeploymentIdle, state.SetDeploymentIdle{Name: "chat", Time: now.UnixMilli()})
			if err := Verify(w.s, stale, opts()); !errors.Is(err, ErrStale) {
				t.Fatalf("Verify of a plan from before the wake = %v, want ErrStale", err)
			}
			woke := w.schedule(opts())
			if got, d := nodesOf(t, woke, "chat"); len(got) != 2 || d.Status != StatusOK {
				t.Fatalf("woken deployment: nodes %v, status %s %q; want 2, ok", got, d.Status, d.Reason)
			}
		})
	}
}
