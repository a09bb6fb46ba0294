package state

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestMachineChanged(t *testing.T) {
	cases := []struct {
		name   string
		change func(t *testing.T, m *Machine)
	}{
		{name: "apply", change: func(t *testing.T, m *Machine) { m.Apply(1, entry(t, TypeNoop, nil)) }},
		{name: "apply with a business error", change: func(t *testing.T, m *Machine) {
			m.Apply(1, entry(t, TypeRemoveNode, RemoveNode{ID: "n9"}))
		}},
		{name: "restore", change: func(t *testing.T, m *Machine) { m.Restore(populated(t).s) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMachine()
			ch := m.Changed()
			if closed(ch) {
				t.Fatal("closed before any change")
			}
			if m.Changed() != ch {
				t.Fatal("Changed returned a new channel without a change")
			}
			tc.change(t, m)
			if !closed(ch) {
				t.Fatal("not closed by the change")
			}
			next := m.Changed()
			if next == ch || closed(next) {
				t.Fatal("the next channel is the old one or already closed")
			}
		})
	}
}

func TestMachineRestore(t *testing.T) {
	m := NewMachine()
	m.Apply(1, entry(t, TypeRegisterNode, RegisterNode{Node: Node{ID: "old"}}))
	src := populated(t)
	want := snapshot(t, src.s)
	m.Restore(src.s)
	if m.Index() != src.s.Index {
		t.Fatalf("index %d, want %d", m.Index(), src.s.Index)
	}
	if got := snapshot(t, m.Snapshot()); !bytes.Equal(got, want) {
		t.Fatalf("restored state differs:\n%s\n%s", got, want)
	}
	m.Read(func(s *State) {
		if s.Nodes["old"] != nil {
			t.Error("the old state leaked through the restore")
		}
	})
	// Apply goes on from the restored state.
	out := m.Apply(src.next, entry(t, TypeReportPlacement, ReportPlacement{Deployment: "d1", Node: "n2", State: PlacementReady}))
	if out.ErrCode != "" {
		t.Fatalf("apply after restore: %s", out.ErrMsg)
	}
}

func TestMachineSnapshotIsACopy(t *testing.T) {
	m := NewMachine()
	m.Apply(1, entry(t, TypeRegisterNode, RegisterNode{Node: Node{ID: "n1", Labels: map[string]string{"a": "1"}}}))
	snap := m.Snapshot()
	snap.Nodes["n1"].Labels["a"] = "changed"
	delete(snap.Nodes, "n1")
	m.Apply(2, entry(t, TypeRegisterNode, RegisterNode{Node: Node{ID: "n2"}}))
	if len(snap.Nodes) != 0 {
		t.Error("an apply reached the snapshot")
	}
	m.Read(func(s *State) {
		if n := s.Nodes["n1"]; n == nil || n.Labels["a"] != "1" {
			t.Errorf("changing the snapshot changed the machine: %+v", n)
		}
	})
}

// TestMachineRejectsBadEntries: a committed entry that cannot be applied
// is skipped and recorded on every replica alike; the machine goes on.
func TestMachineRejectsBadEntries(t *testing.T) {
	bad := map[string][]byte{
		"corrupt":        {1},
		"body not json":  append([]byte{byte(TypeRegisterNode), 0}, `{"b":"n1"}`...),
		"envelope array": append([]byte{byte(TypeRemoveNode), 0}, `[1]`...),
	}
	for name, e := range bad {
		t.Run(name, func(t *testing.T) {
			replicas := []*Machine{NewMachine(), NewMachine()}
			for _, m := range replicas {
				m.Apply(1, entry(t, TypeRegisterNode, RegisterNode{Node: Node{ID: "n1"}}))
				ch := m.Changed()
				out := m.Apply(2, e)
				if !errors.Is(out.Err(), ErrRejected) || out.Index != 2 {
					t.Fatalf("outcome %+v, want rejected at 2", out)
				}
				if !closed(ch) {
					t.Fatal("a rejected entry did not signal its index")
				}
				if out := m.Apply(3, entry(t, TypeNoop, nil)); out.Index != 3 || out.Err() != nil {
					t.Fatalf("apply after the rejection: %+v", out)
				}
			}
			a, b := replicas[0].Snapshot(), replicas[1].Snapshot()
			if a.RejectedTotal != 1 || len(a.Rejected) != 1 || a.Rejected[0].Index != 2 || a.Nodes["n1"] == nil {
				t.Fatalf("state after rejection: %+v", a)
			}
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("replicas differ:\n%+v\n%+v", a, b)
			}
		})
	}
}

func TestRejectedIsBounded(t *testing.T) {
	m := NewMachine()
	for i := uint64(1); i <= MaxRejected+5; i++ {
		m.Apply(i, []byte{9})
	}
	s := m.Snapshot()
	if len(s.Rejected) != MaxRejected || s.RejectedTotal != MaxRejected+5 || s.Rejected[0].Index != 6 {
		t.Fatalf("rejected %d (first %d), total %d", len(s.Rejected), s.Rejected[0].Index, s.RejectedTotal)
	}
}

func TestMachineConcurrent(t *testing.T) {
	const (
		writes  = 400
		readers = 4
	)
	m := NewMachine()
	var entries [][]byte
	for i := range writes {
		n, d := fmt.Sprintf("n%d", i%7), fmt.Sprintf("d%d", i%5)
		switch i % 6 {
		case 0:
			entries = append(entries, entry(t, TypeRegisterNode, RegisterNode{Node: Node{ID: n, Labels: map[string]string{"i": fmt.Sprint(i)}}}))
		case 1:
			entries = append(entries, entry(t, TypePutDeployment, PutDeployment{Deployment: Deployment{Name: d, Model: "m", Replicas: i % 3}}))
		case 2:
			entries = append(entries, entry(t, TypeSetPlacements, SetPlacements{Deployments: map[string][]string{d: {n, "n0"}}}))
		case 3:
			entries = append(entries, entry(t, TypeReportPlacement, ReportPlacement{Deployment: d, Node: n, State: PlacementReady}))
		case 4:
			entries = append(entries, entryKeyed(t, TypeRemoveNode, 0, fmt.Sprintf("k%d", i%30), RemoveNode{ID: n}))
		case 5:
			entries = append(entries, entry(t, TypeDeleteDeployment, DeleteDeployment{Name: d}))
		}
	}

	var wg sync.WaitGroup
	errs := make(chan error, readers*4)
	stop := make(chan struct{})
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var last uint64
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				idx := m.Index()
				if idx < last {
					errs <- fmt.Errorf("reader %d: index went back from %d to %d", r, last, idx)
					return
				}
				last = idx
				switch i % 3 {
				case 0:
					m.Read(func(s *State) {
						for _, n := range s.NodeList() {
							_ = n.Labels["i"]
						}
						for _, d := range s.DeploymentList() {
							_ = s.PlacementsOf(d.Name)
						}
						if err := checkInvariants(s); err != nil {
							errs <- err
						}
					})
				case 1:
					snap := m.Snapshot()
					if err := checkInvariants(snap); err != nil {
						errs <- err
					}
					snap.Nodes["mine"] = &Node{ID: "mine"} // must not race with the writer
				case 2:
					select {
					case <-m.Changed():
					case <-stop:
					case <-time.After(time.Millisecond):
					}
				}
			}
		}()
	}

	// A waiter for the last index, the way a writer waits for its entry.
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		for {
			ch := m.Changed()
			if m.Index() >= writes {
				return
			}
			<-ch
		}
	}()

	for i, e := range entries {
		m.Apply(uint64(i+1), e)
	}
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiter never saw the last index")
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// The machine ends where a plain state does.
	s := New()
	for i, e := range entries {
		s.Apply(uint64(i+1), e)
	}
	if a, b := snapshot(t, m.Snapshot()), snapshot(t, s); !bytes.Equal(a, b) {
		t.Fatal("the machine's state differs from a plain replay")
	}
}

// TestMachineHaltsOnUnknownType: an entry of a type this version does not
// know and may not skip stops the machine where it is, on every replica
// of this version: nothing after it applies (the state stays a true
// prefix of the cluster's, no index moves, no reader is woken), until a
// restored state is past the entry.
func TestMachineHaltsOnUnknownType(t *testing.T) {
	m := NewMachine()
	m.Apply(1, entry(t, TypeRegisterNode, RegisterNode{Node: Node{ID: "n1"}}))
	before := snapshot(t, m.Snapshot())
	ch := m.Changed()
	unknown := entryKeyed(t, Type(200), 0, "", map[string]int{"x": 1})
	for i, e := range [][]byte{unknown, entry(t, TypeRegisterNode, RegisterNode{Node: Node{ID: "n2"}}), entry(t, TypeNoop, nil)} {
		out := m.Apply(uint64(2+i), e)
		if !errors.Is(out.Err(), ErrUnknownType) || out.Index != uint64(2+i) {
			t.Fatalf("entry %d: outcome %+v, want unknown_type", 2+i, out)
		}
	}
	var u *UnknownTypeError
	if err := m.Halted(); !errors.As(err, &u) || u.Index != 2 || u.Type != 200 {
		t.Fatalf("Halted() = %v, want the entry at 2 of type 200", err)
	}
	if after := snapshot(t, m.Snapshot()); string(after) != string(before) || m.Index() != 1 {
		t.Fatalf("a halted machine changed:\nbefore %s\nafter  %s", before, after)
	}
	if closed(ch) {
		t.Fatal("a halted machine woke readers as if it had applied")
	}
	s := m.Snapshot()
	s.Index = 1
	m.Restore(s)
	if m.Halted() == nil {
		t.Fatal("a state restored before the entry un-halted the machine")
	}
	s.Index = 4
	m.Restore(s)
	if m.Halted() != nil {
		t.Fatal("a state restored past the entry left the machine halted")
	}
	if out := m.Apply(5, entry(t, TypeNoop, nil)); out.Err() != nil || m.Index() != 5 {
		t.Fatalf("after the restore: %+v at %d", out, m.Index())
	}
}

// TestMachineStop: a machine its owner stopped applies nothing until a
// state is restored.
func TestMachineStop(t *testing.T) {
	m := NewMachine()
	m.Apply(1, entry(t, TypeNoop, nil))
	why := fmt.Errorf("a snapshot cannot be read: %w", ErrNewerVersion)
	m.Stop(why)
	if out := m.Apply(2, entry(t, TypeRegisterNode, RegisterNode{Node: Node{ID: "n1"}})); !errors.Is(out.Err(), ErrUnknownType) || m.Index() != 1 {
		t.Fatalf("a stopped machine applied: %+v, index %d", out, m.Index())
	}
	if !errors.Is(m.Halted(), ErrNewerVersion) {
		t.Fatalf("Halted() = %v", m.Halted())
	}
	m.Restore(New())
	if m.Halted() != nil {
		t.Fatal("a restored state did not let the machine go on")
	}
}
