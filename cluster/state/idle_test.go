package state

import "testing"

// idleApplier holds deployment d1 with a ten-second idle timeout, put at
// time 1000.
func idleApplier(t *testing.T) *applier {
	a := newApplier(t)
	a.ok(TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d1", Model: "m", Replicas: 1, IdleTimeout: 10}, Time: 1000})
	return a
}

func TestTouchDeployment(t *testing.T) {
	cases := []struct {
		name    string
		touches []int64
		want    int64
		errCode string
		target  string
	}{
		{name: "moves last used forward", touches: []int64{2000}, want: 2000},
		{name: "never moves it back", touches: []int64{3000, 2000}, want: 3000},
		{name: "an earlier time than the write changes nothing", touches: []int64{500}, want: 1000},
		{name: "unknown deployment", touches: []int64{2000}, want: 1000, errCode: "not_found", target: "nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := idleApplier(t)
			target := tc.target
			if target == "" {
				target = "d1"
			}
			for _, at := range tc.touches {
				wantErr(t, a.do(TypeTouchDeployment, TouchDeployment{Name: target, Time: at}), tc.errCode)
			}
			if got := a.s.Deployments["d1"].LastUsed; got != tc.want {
				t.Errorf("LastUsed = %d, want %d", got, tc.want)
			}
			if a.s.Deployments["d1"].Idle {
				t.Error("a touch made the deployment idle")
			}
			// Every touch is a use, whatever its clock said.
			if got, want := a.s.Deployments["d1"].UsedIndex, uint64(1+len(tc.touches)); tc.errCode == "" && got != want {
				t.Errorf("UsedIndex = %d, want %d (the last touch's index)", got, want)
			}
		})
	}
}

func TestSetDeploymentIdle(t *testing.T) {
	cases := []struct {
		name     string
		setup    func(a *applier)
		cmd      SetDeploymentIdle
		errCode  string
		idle     bool
		lastUsed int64
	}{
		{
			name: "marks idle when unused since what the leader saw",
			cmd:  SetDeploymentIdle{Name: "d1", Idle: true, Time: 20000, UnusedSince: 1000},
			idle: true, lastUsed: 1000,
		},
		{
			name:    "a use recorded after the leader looked wins",
			setup:   func(a *applier) { a.ok(TypeTouchDeployment, TouchDeployment{Name: "d1", Time: 15000}) },
			cmd:     SetDeploymentIdle{Name: "d1", Idle: true, Time: 20000, UnusedSince: 1000},
			errCode: "conflict", lastUsed: 15000,
		},
		{
			name:    "a use recorded after the leader looked wins, whatever its clock",
			setup:   func(a *applier) { a.ok(TypeTouchDeployment, TouchDeployment{Name: "d1", Time: 500}) },
			cmd:     SetDeploymentIdle{Name: "d1", Idle: true, Time: 20000, UnusedSince: 1000, UnusedSinceIndex: 1},
			errCode: "conflict", lastUsed: 1000,
		},
		{
			name:  "marks idle when no use was recorded after the index the leader saw",
			setup: func(a *applier) { a.ok(TypeTouchDeployment, TouchDeployment{Name: "d1", Time: 500}) },
			cmd:   SetDeploymentIdle{Name: "d1", Idle: true, Time: 20000, UnusedSince: 1000, UnusedSinceIndex: 2},
			idle:  true, lastUsed: 1000,
		},
		{
			name: "wake clears idle and counts as a use",
			setup: func(a *applier) {
				a.ok(TypeSetDeploymentIdle, SetDeploymentIdle{Name: "d1", Idle: true, Time: 20000, UnusedSince: 1000})
			},
			cmd:      SetDeploymentIdle{Name: "d1", Time: 30000},
			lastUsed: 30000,
		},
		{
			name: "a touch does not wake",
			setup: func(a *applier) {
				a.ok(TypeSetDeploymentIdle, SetDeploymentIdle{Name: "d1", Idle: true, Time: 20000, UnusedSince: 1000})
				a.ok(TypeTouchDeployment, TouchDeployment{Name: "d1", Time: 25000})
			},
			cmd:  SetDeploymentIdle{Name: "d1", Idle: true, Time: 26000, UnusedSince: 25000},
			idle: true, lastUsed: 25000,
		},
		{
			name: "no idle timeout, never idle",
			setup: func(a *applier) {
				a.ok(TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d1", Model: "m", Replicas: 1}, Time: 1000})
			},
			cmd:     SetDeploymentIdle{Name: "d1", Idle: true, Time: 20000, UnusedSince: 1000},
			errCode: "conflict", lastUsed: 1000,
		},
		{
			name:    "unknown deployment",
			cmd:     SetDeploymentIdle{Name: "nope", Idle: true, Time: 20000},
			errCode: "not_found", lastUsed: 1000,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := idleApplier(t)
			if tc.setup != nil {
				tc.setup(a)
			}
			wantErr(t, a.do(TypeSetDeploymentIdle, tc.cmd), tc.errCode)
			d := a.s.Deployments["d1"]
			if d.Idle != tc.idle || d.LastUsed != tc.lastUsed {
				t.Errorf("idle=%v last used=%d, want idle=%v last used=%d", d.Idle, d.LastUsed, tc.idle, tc.lastUsed)
			}
			mustInvariants(t, a.s)
		})
	}
}

func TestPutDeploymentKeepsIdleness(t *testing.T) {
	a := idleApplier(t)
	a.ok(TypeSetDeploymentIdle, SetDeploymentIdle{Name: "d1", Idle: true, Time: 20000, UnusedSince: 1000})
	// A writer cannot set idleness itself; a write keeps it.
	a.ok(TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d1", Model: "m", Replicas: 2, IdleTimeout: 10, LastUsed: 99999}, Time: 21000})
	if d := a.s.Deployments["d1"]; !d.Idle || d.LastUsed != 21000 {
		t.Fatalf("after a write: idle=%v last used=%d, want idle, 21000", d.Idle, d.LastUsed)
	}
	// Turning the idle timeout off wakes it for good.
	a.ok(TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d1", Model: "m", Replicas: 2}, Time: 22000})
	if d := a.s.Deployments["d1"]; d.Idle {
		t.Fatal("a deployment without idle timeout stayed idle")
	}
	wantErr(t, a.do(TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d2", Model: "m", IdleTimeout: -1}}), "invalid")
	// A new deployment is never idle, whatever the writer says.
	a.ok(TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d3", Model: "m", IdleTimeout: 5, Idle: true}, Time: 5})
	if d := a.s.Deployments["d3"]; d.Idle || d.LastUsed != 5 {
		t.Fatalf("new deployment: idle=%v last used=%d", d.Idle, d.LastUsed)
	}
}
