package state

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// wantErr checks an outcome's error code; "" means success.
func wantErr(t *testing.T, out Outcome, code string) {
	t.Helper()
	if out.ErrCode != code {
		t.Fatalf("err code = %q (%s), want %q", out.ErrCode, out.ErrMsg, code)
	}
	if code == "" {
		if out.Err() != nil {
			t.Fatalf("Err() = %v on success", out.Err())
		}
		return
	}
	if out.ErrMsg == "" {
		t.Errorf("error %q has no message", code)
	}
	sentinel := map[string]error{"not_found": ErrNotFound, "exists": ErrExists, "conflict": ErrConflict, "invalid": ErrInvalid}[code]
	if !errors.Is(out.Err(), sentinel) {
		t.Errorf("Err() = %v, want it to wrap %v", out.Err(), sentinel)
	}
}

// unchangedBut checks that a failed command changed nothing but the index.
func unchangedBut(t *testing.T, before []byte, s *State) {
	t.Helper()
	if after := withoutIndex(t, s); string(after) != string(before) {
		t.Fatalf("a failed command changed the state:\nbefore %s\nafter  %s", before, after)
	}
}

func TestRegisterNode(t *testing.T) {
	gpus := []GPU{{Index: 0, Model: "NVIDIA H800", MemoryBytes: 80 << 30, UUID: "GPU-a"}}
	cases := []struct {
		name    string
		setup   func(a *applier)
		cmd     RegisterNode
		errCode string
		check   func(t *testing.T, a *applier, n Node, index uint64)
	}{
		{
			name: "new node starts ready with joined index",
			cmd: RegisterNode{Node: Node{
				ID: "n1", HTTPAddr: "10.0.0.1:8080", RaftAddr: "10.0.0.1:7000",
				Labels: map[string]string{"jurisdiction": "EU"}, GPUs: gpus, Version: "v1",
			}, Time: 1234},
			check: func(t *testing.T, a *applier, n Node, index uint64) {
				want := Node{
					ID: "n1", HTTPAddr: "10.0.0.1:8080", RaftAddr: "10.0.0.1:7000",
					Labels: map[string]string{"jurisdiction": "EU"}, GPUs: gpus, Version: "v1",
					Status: NodeReady, StatusSince: 1234, JoinedIndex: index,
				}
				if !reflect.DeepEqual(n, want) {
					t.Errorf("outcome node = %+v, want %+v", n, want)
				}
				if got := *a.s.Nodes["n1"]; !reflect.DeepEqual(got, want) {
					t.Errorf("stored node = %+v, want %+v", got, want)
				}
			},
		},
		{
			name: "proposer cannot choose the status or joined index of a new node",
			cmd:  RegisterNode{Node: Node{ID: "n1", Status: NodeDown, JoinedIndex: 999, StatusSince: 5}, Time: 7},
			check: func(t *testing.T, a *applier, n Node, index uint64) {
				if n.Status != NodeReady || n.JoinedIndex != index || n.StatusSince != 7 {
					t.Errorf("node = %+v, want ready, joined at %d, since 7", n, index)
				}
			},
		},
		{
			name: "re-register keeps status and joined index, updates the rest",
			setup: func(a *applier) {
				a.ok(TypeRegisterNode, RegisterNode{Node: Node{ID: "n1", HTTPAddr: "old:1", RaftAddr: "old:2", Labels: map[string]string{"a": "1"}}, Time: 10})
				a.ok(TypeSetNodeStatus, SetNodeStatus{ID: "n1", Status: NodeCordoned, Reason: "maintenance", Time: 20})
			},
			cmd: RegisterNode{Node: Node{
				ID: "n1", HTTPAddr: "new:1", RaftAddr: "new:2", Labels: map[string]string{"b": "2"}, GPUs: gpus, Version: "v2",
				Status: NodeReady, StatusReason: "ignored", StatusSince: 99, JoinedIndex: 99,
			}, Time: 30},
			check: func(t *testing.T, a *applier, n Node, _ uint64) {
				want := Node{
					ID: "n1", HTTPAddr: "new:1", RaftAddr: "new:2", Labels: map[string]string{"b": "2"}, GPUs: gpus, Version: "v2",
					Status: NodeCordoned, StatusReason: "maintenance", StatusSince: 20, JoinedIndex: 1,
				}
				if !reflect.DeepEqual(n, want) {
					t.Errorf("outcome node = %+v, want %+v", n, want)
				}
				if got := *a.s.Nodes["n1"]; !reflect.DeepEqual(got, want) {
					t.Errorf("stored node = %+v, want %+v", got, want)
				}
			},
		},
		{
			name: "re-register keeps the node's placements",
			setup: func(a *applier) {
				a.node("n1")
				a.deployment("d")
				a.place("d", "n1")
			},
			cmd: RegisterNode{Node: Node{ID: "n1", HTTPAddr: "new:1"}},
			check: func(t *testing.T, a *applier, _ Node, _ uint64) {
				if got := placementNodes(a.s, "d"); !slices.Equal(got, []string{"n1"}) {
					t.Errorf("placements of d = %v, want [n1]", got)
				}
			},
		},
		{name: "empty id is invalid", cmd: RegisterNode{Node: Node{HTTPAddr: "x:1"}}, errCode: "invalid"},
		{name: "id with the key separator is invalid", cmd: RegisterNode{Node: Node{ID: "a\x00b"}}, errCode: "invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			if tc.setup != nil {
				tc.setup(a)
			}
			before := withoutIndex(t, a.s)
			index := a.next
			out := a.do(TypeRegisterNode, tc.cmd)
			wantErr(t, out, tc.errCode)
			if out.Index != index || a.s.Index != index {
				t.Errorf("outcome index %d, state index %d, want %d", out.Index, a.s.Index, index)
			}
			mustInvariants(t, a.s)
			if tc.errCode != "" {
				unchangedBut(t, before, a.s)
				return
			}
			tc.check(t, a, decodeValue[Node](t, out), index)
		})
	}
}

func TestRegisterNodeDoesNotAliasCommand(t *testing.T) {
	// Two nodes registered from commands must not share labels: the stored
	// node is decoded from the entry, not from the caller's value.
	a := newApplier(t)
	labels := map[string]string{"a": "1"}
	a.ok(TypeRegisterNode, RegisterNode{Node: Node{ID: "n1", Labels: labels}})
	labels["a"] = "changed"
	if got := a.s.Nodes["n1"].Labels["a"]; got != "1" {
		t.Fatalf("stored label = %q, want 1", got)
	}
}

func TestSetNodeStatus(t *testing.T) {
	cases := []struct {
		name       string
		cmd        SetNodeStatus
		errCode    string
		wantStatus NodeStatus
		wantReason string
		wantSince  int64
	}{
		{name: "down", cmd: SetNodeStatus{ID: "n1", Status: NodeDown, Reason: "missed heartbeats", Time: 50}, wantStatus: NodeDown, wantReason: "missed heartbeats", wantSince: 50},
		{name: "cordoned", cmd: SetNodeStatus{ID: "n1", Status: NodeCordoned, Time: 50}, wantStatus: NodeCordoned, wantSince: 50},
		{name: "draining", cmd: SetNodeStatus{ID: "n1", Status: NodeDraining, Reason: "upgrade", Time: 50}, wantStatus: NodeDraining, wantReason: "upgrade", wantSince: 50},
		{name: "same status keeps since but takes the reason", cmd: SetNodeStatus{ID: "n1", Status: NodeReady, Reason: "checked", Time: 50}, wantStatus: NodeReady, wantReason: "checked", wantSince: 100},
		{name: "unknown status is invalid", cmd: SetNodeStatus{ID: "n1", Status: "sleeping", Time: 50}, errCode: "invalid"},
		{name: "empty status is invalid", cmd: SetNodeStatus{ID: "n1", Time: 50}, errCode: "invalid"},
		{name: "unknown node", cmd: SetNodeStatus{ID: "n9", Status: NodeDown, Time: 50}, errCode: "not_found"},
		{name: "unknown node with invalid status", cmd: SetNodeStatus{ID: "n9", Status: "sleeping"}, errCode: "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			a.node("n1") // at Time 100
			before := withoutIndex(t, a.s)
			out := a.do(TypeSetNodeStatus, tc.cmd)
			wantErr(t, out, tc.errCode)
			if tc.errCode != "" {
				unchangedBut(t, before, a.s)
				return
			}
			n := a.s.Nodes["n1"]
			if n.Status != tc.wantStatus || n.StatusReason != tc.wantReason || n.StatusSince != tc.wantSince {
				t.Errorf("node = %s %q since %d, want %s %q since %d", n.Status, n.StatusReason, n.StatusSince, tc.wantStatus, tc.wantReason, tc.wantSince)
			}
			if got := decodeValue[Node](t, out); !reflect.DeepEqual(got, *n) {
				t.Errorf("outcome node = %+v, stored %+v", got, *n)
			}
		})
	}
}

func TestRemoveNode(t *testing.T) {
	cases := []struct {
		name      string
		id        string
		errCode   string
		wantNodes []string
		wantD1    []string
		wantD2    []string
	}{
		{name: "removes the node and its placements", id: "n1", wantNodes: []string{"n2"}, wantD1: []string{"n2"}, wantD2: nil},
		{name: "other node", id: "n2", wantNodes: []string{"n1"}, wantD1: []string{"n1"}, wantD2: []string{"n1"}},
		{name: "unknown node", id: "n9", errCode: "not_found"},
		{name: "empty id", id: "", errCode: "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			a.node("n1")
			a.node("n2")
			a.deployment("d1")
			a.deployment("d2")
			a.place("d1", "n1", "n2")
			a.place("d2", "n1")
			before := withoutIndex(t, a.s)
			out := a.do(TypeRemoveNode, RemoveNode{ID: tc.id})
			wantErr(t, out, tc.errCode)
			mustInvariants(t, a.s)
			if tc.errCode != "" {
				unchangedBut(t, before, a.s)
				return
			}
			var nodes []string
			for _, n := range a.s.NodeList() {
				nodes = append(nodes, n.ID)
			}
			if !slices.Equal(nodes, tc.wantNodes) {
				t.Errorf("nodes = %v, want %v", nodes, tc.wantNodes)
			}
			if got := placementNodes(a.s, "d1"); !slices.Equal(got, tc.wantD1) {
				t.Errorf("d1 on %v, want %v", got, tc.wantD1)
			}
			if got := placementNodes(a.s, "d2"); !slices.Equal(got, tc.wantD2) {
				t.Errorf("d2 on %v, want %v", got, tc.wantD2)
			}
			if len(a.s.Deployments) != 2 {
				t.Errorf("removing a node removed deployments: %d left", len(a.s.Deployments))
			}
		})
	}
}

func TestPutDeployment(t *testing.T) {
	base := Deployment{Name: "d", Model: "llama3:8b", Replicas: 2, Constraints: []string{"jurisdiction=EU"}, Priority: 5}
	replaced := Deployment{Name: "d", Model: "llama3:70b", Replicas: 3}
	// The setup puts d at index 1 (version 1) and again at index 2 (version 2).
	cases := []struct {
		name     string
		existing bool
		cmd      PutDeployment
		errCode  string
		want     Deployment // Version, CreatedIndex and ModifiedIndex filled by the test for index 3
		version  uint64
		created  uint64
	}{
		{name: "create", cmd: PutDeployment{Deployment: base}, want: base, version: 1, created: 3},
		{name: "create with create flag", cmd: PutDeployment{Deployment: base, Create: true}, want: base, version: 1, created: 3},
		{name: "zero replicas is allowed", cmd: PutDeployment{Deployment: Deployment{Name: "d", Model: "m"}}, want: Deployment{Name: "d", Model: "m"}, version: 1, created: 3},
		{name: "replace bumps version and keeps created index", existing: true, cmd: PutDeployment{Deployment: replaced}, want: replaced, version: 3, created: 1},
		{name: "replace at the current version", existing: true, cmd: PutDeployment{Deployment: replaced, IfVersion: 2}, want: replaced, version: 3, created: 1},
		{name: "proposer cannot choose version or indexes", existing: true, cmd: PutDeployment{Deployment: Deployment{Name: "d", Model: "m", Version: 77, CreatedIndex: 77, ModifiedIndex: 77}}, want: Deployment{Name: "d", Model: "m"}, version: 3, created: 1},
		{name: "create flag on existing", existing: true, cmd: PutDeployment{Deployment: replaced, Create: true}, errCode: "exists"},
		{name: "create flag with current version on existing", existing: true, cmd: PutDeployment{Deployment: replaced, Create: true, IfVersion: 2}, errCode: "exists"},
		{name: "stale version", existing: true, cmd: PutDeployment{Deployment: replaced, IfVersion: 1}, errCode: "conflict"},
		{name: "future version", existing: true, cmd: PutDeployment{Deployment: replaced, IfVersion: 3}, errCode: "conflict"},
		{name: "version of a missing deployment", cmd: PutDeployment{Deployment: base, IfVersion: 1}, errCode: "conflict"},
		{name: "empty name", cmd: PutDeployment{Deployment: Deployment{Model: "m"}}, errCode: "invalid"},
		{name: "name with the key separator", cmd: PutDeployment{Deployment: Deployment{Name: "d\x00x", Model: "m"}}, errCode: "invalid"},
		{name: "no model", cmd: PutDeployment{Deployment: Deployment{Name: "d"}}, errCode: "invalid"},
		{name: "negative replicas", existing: true, cmd: PutDeployment{Deployment: Deployment{Name: "d", Model: "m", Replicas: -1}}, errCode: "invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			if tc.existing {
				a.ok(TypePutDeployment, PutDeployment{Deployment: base})
				a.ok(TypePutDeployment, PutDeployment{Deployment: base})
			} else {
				a.ok(TypeNoop, nil)
				a.ok(TypeNoop, nil)
			}
			before := withoutIndex(t, a.s)
			out := a.do(TypePutDeployment, tc.cmd)
			wantErr(t, out, tc.errCode)
			mustInvariants(t, a.s)
			if tc.errCode != "" {
				unchangedBut(t, before, a.s)
				return
			}
			want := tc.want
			want.Version, want.CreatedIndex, want.ModifiedIndex, want.UsedIndex = tc.version, tc.created, 3, 3
			if got := decodeValue[Deployment](t, out); !reflect.DeepEqual(got, want) {
				t.Errorf("outcome = %+v, want %+v", got, want)
			}
			if got := *a.s.Deployments["d"]; !reflect.DeepEqual(got, want) {
				t.Errorf("stored = %+v, want %+v", got, want)
			}
		})
	}
}

func TestPutDeploymentKeepsPlacements(t *testing.T) {
	a := newApplier(t)
	a.node("n1")
	a.deployment("d")
	a.place("d", "n1")
	a.ok(TypeReportPlacement, ReportPlacement{Deployment: "d", Node: "n1", State: PlacementReady})
	a.ok(TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d", Model: "llama3:70b", Replicas: 4}})
	if p := a.s.Placement("d", "n1"); p == nil || p.State != PlacementReady {
		t.Fatalf("placement after replace = %+v, want ready", p)
	}
}

func TestDeleteDeployment(t *testing.T) {
	cases := []struct {
		name    string
		target  string
		errCode string
		wantDep []string
	}{
		{name: "removes the deployment and its placements", target: "d1", wantDep: []string{"d2"}},
		{name: "other deployment", target: "d2", wantDep: []string{"d1"}},
		{name: "unknown deployment", target: "d9", errCode: "not_found"},
		{name: "empty name", target: "", errCode: "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			a.node("n1")
			a.node("n2")
			a.deployment("d1")
			a.deployment("d2")
			a.place("d1", "n1", "n2")
			a.place("d2", "n2")
			before := withoutIndex(t, a.s)
			out := a.do(TypeDeleteDeployment, DeleteDeployment{Name: tc.target})
			wantErr(t, out, tc.errCode)
			mustInvariants(t, a.s)
			if tc.errCode != "" {
				unchangedBut(t, before, a.s)
				return
			}
			var names []string
			for _, d := range a.s.DeploymentList() {
				names = append(names, d.Name)
			}
			if !slices.Equal(names, tc.wantDep) {
				t.Errorf("deployments = %v, want %v", names, tc.wantDep)
			}
			if got := placementNodes(a.s, tc.target); got != nil {
				t.Errorf("%s still placed on %v", tc.target, got)
			}
			if len(a.s.Nodes) != 2 {
				t.Errorf("deleting a deployment removed nodes")
			}
		})
	}
}

func TestDeleteThenRecreateStartsOver(t *testing.T) {
	a := newApplier(t)
	a.deployment("d")
	a.deployment("d")
	a.ok(TypeDeleteDeployment, DeleteDeployment{Name: "d"})
	out := a.ok(TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d", Model: "m"}, Create: true})
	if d := decodeValue[Deployment](t, out); d.Version != 1 || d.CreatedIndex != 4 {
		t.Fatalf("recreated = %+v, want version 1 created at 4", d)
	}
}

func TestSetPlacements(t *testing.T) {
	// The setup: nodes n1..n3, deployments d1 and d2, d1 on n1 (ready) and
	// n2 (pending), d2 on n3 (pulling). Setup ends at index 9.
	type want map[string]map[string]PlacementState // deployment -> node -> state
	cases := []struct {
		name    string
		plan    map[string][]string
		errCode string
		want    want
		fresh   []string // "deployment/node" created by this command
	}{
		{
			name:  "keeps state of kept placements, adds pending, drops the rest",
			plan:  map[string][]string{"d1": {"n1", "n3"}},
			want:  want{"d1": {"n1": PlacementReady, "n3": PlacementPending}, "d2": {"n3": PlacementPulling}},
			fresh: []string{"d1/n3"},
		},
		{
			name:  "several deployments at once",
			plan:  map[string][]string{"d1": {"n2"}, "d2": {"n1", "n2", "n3"}},
			want:  want{"d1": {"n2": PlacementPending}, "d2": {"n1": PlacementPending, "n2": PlacementPending, "n3": PlacementPulling}},
			fresh: []string{"d2/n1", "d2/n2"},
		},
		{
			name: "empty list removes every placement of a deployment",
			plan: map[string][]string{"d1": {}},
			want: want{"d2": {"n3": PlacementPulling}},
		},
		{
			name: "null list removes every placement of a deployment",
			plan: map[string][]string{"d1": nil},
			want: want{"d2": {"n3": PlacementPulling}},
		},
		{
			name:  "duplicate nodes place once",
			plan:  map[string][]string{"d2": {"n1", "n1", "n3"}},
			want:  want{"d1": {"n1": PlacementReady, "n2": PlacementPending}, "d2": {"n1": PlacementPending, "n3": PlacementPulling}},
			fresh: []string{"d2/n1"},
		},
		{
			name: "empty plan changes nothing",
			plan: map[string][]string{},
			want: want{"d1": {"n1": PlacementReady, "n2": PlacementPending}, "d2": {"n3": PlacementPulling}},
		},
		{name: "unknown deployment", plan: map[string][]string{"d9": {"n1"}}, errCode: "not_found"},
		{name: "unknown node", plan: map[string][]string{"d1": {"n1", "n9"}}, errCode: "not_found"},
		{name: "empty node name", plan: map[string][]string{"d1": {""}}, errCode: "not_found"},
		{name: "atomic: one unknown deployment among good ones", plan: map[string][]string{"d1": {"n3"}, "d2": {"n1"}, "d9": {"n1"}}, errCode: "not_found"},
		{name: "atomic: one unknown node among good ones", plan: map[string][]string{"d1": {"n3"}, "d2": {"n1", "n9"}}, errCode: "not_found"},
		{name: "atomic: unknown node in the first deployment", plan: map[string][]string{"d1": {"n9"}, "d2": {"n1"}}, errCode: "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			a.node("n1")
			a.node("n2")
			a.node("n3")
			a.deployment("d1")
			a.deployment("d2")
			a.place("d1", "n1", "n2")
			a.place("d2", "n3")
			a.ok(TypeReportPlacement, ReportPlacement{Deployment: "d1", Node: "n1", State: PlacementReady})
			a.ok(TypeReportPlacement, ReportPlacement{Deployment: "d2", Node: "n3", State: PlacementPulling, Progress: 0.5})
			old := a.s.Clone()
			before := withoutIndex(t, a.s)
			index := a.next
			out := a.do(TypeSetPlacements, SetPlacements{Deployments: tc.plan})
			wantErr(t, out, tc.errCode)
			mustInvariants(t, a.s)
			if tc.errCode != "" {
				unchangedBut(t, before, a.s)
				return
			}
			got := want{}
			for _, p := range a.s.Placements {
				if got[p.Deployment] == nil {
					got[p.Deployment] = map[string]PlacementState{}
				}
				got[p.Deployment][p.Node] = p.State
				k := p.Deployment + "/" + p.Node
				isFresh := slices.Contains(tc.fresh, k)
				switch {
				case isFresh && p.ModifiedIndex != index:
					t.Errorf("new placement %s modified at %d, want %d", k, p.ModifiedIndex, index)
				case !isFresh && !reflect.DeepEqual(p, old.Placement(p.Deployment, p.Node)):
					t.Errorf("kept placement %s changed: %+v, was %+v", k, p, old.Placement(p.Deployment, p.Node))
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("placements = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSetPlacementsErrorIsDeterministic(t *testing.T) {
	// With several bad names the error must name the same one on every
	// replica: the message is part of the outcome, and remembered outcomes
	// are part of the snapshot.
	plan := SetPlacements{Deployments: map[string][]string{}}
	for _, name := range []string{"x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8"} {
		plan.Deployments[name] = []string{"n1"}
	}
	var first string
	for i := range 50 {
		a := newApplier(t)
		a.node("n1")
		out := a.do(TypeSetPlacements, plan)
		wantErr(t, out, "not_found")
		if i == 0 {
			first = out.ErrMsg
			if !strings.Contains(first, `"x1"`) {
				t.Errorf("error %q does not name the first bad deployment in sorted order", first)
			}
		} else if out.ErrMsg != first {
			t.Fatalf("run %d: error %q, run 0: %q", i, out.ErrMsg, first)
		}
	}
}

func TestReportPlacement(t *testing.T) {
	cases := []struct {
		name    string
		cmd     ReportPlacement
		errCode string
	}{
		{name: "pulling with progress", cmd: ReportPlacement{Deployment: "d", Node: "n1", State: PlacementPulling, Progress: 0.25}},
		{name: "loading", cmd: ReportPlacement{Deployment: "d", Node: "n1", State: PlacementLoading}},
		{name: "ready", cmd: ReportPlacement{Deployment: "d", Node: "n1", State: PlacementReady}},
		{name: "failed with reason", cmd: ReportPlacement{Deployment: "d", Node: "n1", State: PlacementFailed, Reason: "out of memory"}},
		{name: "back to pending", cmd: ReportPlacement{Deployment: "d", Node: "n1", State: PlacementPending}},
		{name: "unknown state", cmd: ReportPlacement{Deployment: "d", Node: "n1", State: "sleeping"}, errCode: "invalid"},
		{name: "empty state", cmd: ReportPlacement{Deployment: "d", Node: "n1"}, errCode: "invalid"},
		{name: "node without the placement", cmd: ReportPlacement{Deployment: "d", Node: "n2", State: PlacementReady}, errCode: "not_found"},
		{name: "unknown deployment", cmd: ReportPlacement{Deployment: "d9", Node: "n1", State: PlacementReady}, errCode: "not_found"},
		{name: "unknown node", cmd: ReportPlacement{Deployment: "d", Node: "n9", State: PlacementReady}, errCode: "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			a.node("n1")
			a.node("n2")
			a.deployment("d")
			a.place("d", "n1")
			a.ok(TypeReportPlacement, ReportPlacement{Deployment: "d", Node: "n1", State: PlacementPulling, Reason: "old", Progress: 0.1})
			before := withoutIndex(t, a.s)
			index := a.next
			out := a.do(TypeReportPlacement, tc.cmd)
			wantErr(t, out, tc.errCode)
			if tc.errCode != "" {
				unchangedBut(t, before, a.s)
				return
			}
			want := Placement{Deployment: "d", Node: "n1", State: tc.cmd.State, Reason: tc.cmd.Reason, Progress: tc.cmd.Progress, ModifiedIndex: index}
			if got := *a.s.Placement("d", "n1"); got != want {
				t.Errorf("stored = %+v, want %+v", got, want)
			}
			if got := decodeValue[Placement](t, out); got != want {
				t.Errorf("outcome = %+v, want %+v", got, want)
			}
		})
	}
}

func TestNoop(t *testing.T) {
	a := newApplier(t)
	a.node("n1")
	before := withoutIndex(t, a.s)
	out := a.do(TypeNoop, nil)
	wantErr(t, out, "")
	if out.Index != 2 || a.s.Index != 2 || out.Value != nil || out.Skipped || out.Replayed {
		t.Fatalf("noop outcome %+v, state index %d", out, a.s.Index)
	}
	unchangedBut(t, before, a.s)
}

func TestOutcomeErr(t *testing.T) {
	cases := []struct {
		name string
		out  Outcome
		is   error
		msg  string
	}{
		{name: "success", out: Outcome{Value: []byte(`1`)}},
		{name: "not found", out: Outcome{ErrCode: "not_found", ErrMsg: "x"}, is: ErrNotFound, msg: "not found: x"},
		{name: "exists", out: Outcome{ErrCode: "exists", ErrMsg: "x"}, is: ErrExists, msg: "already exists: x"},
		{name: "conflict", out: Outcome{ErrCode: "conflict", ErrMsg: "x"}, is: ErrConflict, msg: "version conflict: x"},
		{name: "invalid", out: Outcome{ErrCode: "invalid", ErrMsg: "x"}, is: ErrInvalid, msg: "invalid command: x"},
		{name: "code from a newer version", out: Outcome{ErrCode: "quota", ErrMsg: "over quota"}, msg: "over quota"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.out.Err()
			if tc.msg == "" {
				if err != nil {
					t.Fatalf("Err() = %v, want nil", err)
				}
				return
			}
			if err == nil || err.Error() != tc.msg {
				t.Fatalf("Err() = %v, want %q", err, tc.msg)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Err() does not wrap %v", tc.is)
			}
			for _, other := range []error{ErrNotFound, ErrExists, ErrConflict, ErrInvalid} {
				if other != tc.is && errors.Is(err, other) {
					t.Errorf("Err() wraps %v too", other)
				}
			}
		})
	}
}

func TestListsAreSorted(t *testing.T) {
	a := newApplier(t)
	for _, id := range []string{"n3", "n1", "n2"} {
		a.node(id)
	}
	for _, name := range []string{"b", "c", "a"} {
		a.deployment(name)
	}
	a.place("a", "n2", "n3", "n1")
	var nodes, deps []string
	for _, n := range a.s.NodeList() {
		nodes = append(nodes, n.ID)
	}
	for _, d := range a.s.DeploymentList() {
		deps = append(deps, d.Name)
	}
	if !slices.Equal(nodes, []string{"n1", "n2", "n3"}) || !slices.Equal(deps, []string{"a", "b", "c"}) {
		t.Fatalf("nodes %v, deployments %v", nodes, deps)
	}
	if got := placementNodes(a.s, "a"); !slices.Equal(got, []string{"n1", "n2", "n3"}) {
		t.Fatalf("placements of a on %v", got)
	}
	if a.s.Placement("a", "n9") != nil || a.s.Placement("b", "n1") != nil {
		t.Fatal("Placement returned a placement that does not exist")
	}
	if got := New().PlacementsOf("a"); got != nil {
		t.Fatalf("PlacementsOf on an empty state = %v", got)
	}
}

func TestPlacementKeysCannotCollide(t *testing.T) {
	// A placement is keyed by deployment and node joined with a NUL byte, so
	// names holding that byte could make two placements share a key. Either
	// such names are refused or the placements stay apart.
	a := newApplier(t)
	regs := []Outcome{
		a.do(TypeRegisterNode, RegisterNode{Node: Node{ID: "c"}}),
		a.do(TypeRegisterNode, RegisterNode{Node: Node{ID: "b\x00c"}}),
		a.do(TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "a", Model: "m"}}),
		a.do(TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "a\x00b", Model: "m"}}),
	}
	for _, out := range regs {
		if out.ErrCode != "" {
			return // refused
		}
	}
	a.place("a\x00b", "c")
	a.place("a", "b\x00c")
	mustInvariants(t, a.s)
	if got := placementNodes(a.s, "a"); !slices.Equal(got, []string{"b\x00c"}) {
		t.Fatalf("placements of a on %q, want [b\\x00c]", got)
	}
}
