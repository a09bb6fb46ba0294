package state

import (
	"bytes"
	"fmt"
	"math/rand"
	"reflect"
	"testing"
)

// randomEntries returns n encoded commands drawn from a small space of
// names, so that commands collide and every business error comes up.
func randomEntries(t testing.TB, seed int64, n int) [][]byte {
	t.Helper()
	r := rand.New(rand.NewSource(seed))
	pick := func(xs ...string) string { return xs[r.Intn(len(xs))] }
	node := func() string { return pick("n0", "n1", "n2", "n3", "n0", "n1", "n2", "n3", "n9", "") }
	dep := func() string { return pick("d0", "d1", "d2", "d0", "d1", "d2", "d9", "") }
	var out [][]byte
	for i := range n {
		var (
			typ   Type
			flags Flags
			body  any
		)
		switch k := r.Intn(100); {
		case k < 14:
			typ = TypeRegisterNode
			nd := Node{ID: node(), HTTPAddr: fmt.Sprintf("h%d", r.Intn(3)), Version: pick("v1", "v2")}
			if r.Intn(2) == 0 {
				nd.Labels = map[string]string{"zone": pick("a", "b"), "jurisdiction": pick("EU", "US")}
			}
			for g := range r.Intn(3) {
				nd.GPUs = append(nd.GPUs, GPU{Index: g, Model: "NVIDIA H800", MemoryBytes: uint64(r.Intn(4)) << 30})
			}
			body = RegisterNode{Node: nd, Time: int64(i)}
		case k < 24:
			typ = TypeSetNodeStatus
			body = SetNodeStatus{ID: node(), Status: NodeStatus(pick("ready", "down", "cordoned", "draining", "bogus")), Reason: pick("", "why"), Time: int64(i)}
		case k < 30:
			typ = TypeRemoveNode
			body = RemoveNode{ID: node()}
		case k < 50:
			typ = TypePutDeployment
			d := Deployment{Name: dep(), Model: pick("llama3:8b", "qwen2:7b", "", "llama3:8b"), Replicas: r.Intn(5) - 1, Priority: r.Intn(3)}
			if r.Intn(2) == 0 {
				d.Constraints = []string{pick("jurisdiction=EU", "zone=a")}
			}
			c := PutDeployment{Deployment: d, Create: r.Intn(5) == 0}
			if r.Intn(3) == 0 {
				c.IfVersion = uint64(r.Intn(4))
			}
			body = c
		case k < 56:
			typ = TypeDeleteDeployment
			body = DeleteDeployment{Name: dep()}
		case k < 76:
			typ = TypeSetPlacements
			plan := map[string][]string{}
			for range r.Intn(4) {
				var nodes []string
				for range r.Intn(4) {
					nodes = append(nodes, node())
				}
				plan[dep()] = nodes
			}
			body = SetPlacements{Deployments: plan}
		case k < 94:
			typ = TypeReportPlacement
			body = ReportPlacement{
				Deployment: dep(), Node: node(),
				State:    PlacementState(pick("pending", "pulling", "loading", "ready", "failed", "bogus")),
				Reason:   pick("", "oom"),
				Progress: float64(r.Intn(1000)) / 997,
			}
		case k < 95:
			typ = TypeNoop
		case k < 96:
			typ = TypeRegisterModel
			m := tinySpec(pick("m0", "m1", "M1:latest", "bad name"))
			m.Layers = r.Intn(3)
			body = RegisterModel{Model: m, Create: r.Intn(2) == 0}
		case k < 97:
			typ = TypeUnregisterModel
			body = UnregisterModel{Name: pick("m0", "m1:latest", "m9")}
		default:
			typ, flags, body = Type(10+r.Intn(100)), FlagIgnorable, map[string]int{"x": i}
		}
		key := ""
		if r.Intn(3) == 0 {
			key = fmt.Sprintf("k%d", r.Intn(12))
		}
		out = append(out, entryKeyed(t, typ, flags, key, body))
	}
	return out
}

// run applies entries to a fresh state, checking invariants after each.
func run(t *testing.T, entries [][]byte) (*State, []Outcome) {
	t.Helper()
	s := New()
	outs := make([]Outcome, len(entries))
	for i, e := range entries {
		outs[i] = s.Apply(uint64(i+1), e)
		if err := checkInvariants(s); err != nil {
			t.Fatalf("after entry %d (%q): %v", i+1, e, err)
		}
	}
	return s, outs
}

const (
	propertySeeds   = 6
	propertyEntries = 600
	checkpointEvery = 75
)

func TestApplyIsDeterministic(t *testing.T) {
	for seed := int64(1); seed <= propertySeeds; seed++ {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			entries := randomEntries(t, seed, propertyEntries)
			ref, refOuts := run(t, entries)
			refSnap := snapshot(t, ref)

			// The sequence must reach every kind of result, or it tests
			// too little.
			seen := map[string]int{}
			for _, o := range refOuts {
				switch {
				case o.Replayed:
					seen["replayed"]++
				case o.Skipped:
					seen["skipped"]++
				case o.ErrCode != "":
					seen[o.ErrCode]++
				default:
					seen["ok"]++
				}
			}
			for _, k := range []string{"ok", "replayed", "skipped", "not_found", "exists", "conflict", "invalid"} {
				if seen[k] == 0 {
					t.Errorf("no %q outcome in the sequence: %v", k, seen)
				}
			}
			if len(ref.Placements) == 0 && len(ref.Deployments) == 0 {
				t.Errorf("the sequence ends in an empty state")
			}

			// Map iteration order differs from run to run; nothing of it
			// may reach the outcomes or the state.
			for i := range 20 {
				s, outs := New(), make([]Outcome, len(entries))
				for j, e := range entries {
					outs[j] = s.Apply(uint64(j+1), e)
				}
				if !reflect.DeepEqual(outs, refOuts) {
					for j := range outs {
						if !reflect.DeepEqual(outs[j], refOuts[j]) {
							t.Fatalf("run %d, entry %d: outcome %+v, first run %+v", i, j+1, outs[j], refOuts[j])
						}
					}
				}
				if got := snapshot(t, s); !bytes.Equal(got, refSnap) {
					t.Fatalf("run %d: snapshot differs", i)
				}
			}
		})
	}
}

func TestReplicasConvergeFromSnapshots(t *testing.T) {
	for seed := int64(1); seed <= propertySeeds; seed++ {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			entries := randomEntries(t, 100+seed, propertyEntries)
			ref, _ := run(t, entries)
			want := snapshot(t, ref)

			s := New()
			for i, e := range entries {
				s.Apply(uint64(i+1), e)
				if (i+1)%checkpointEvery != 0 {
					continue
				}
				at := snapshot(t, s)

				// Encode -> Decode -> Encode gives the same bytes.
				back, err := Decode(bytes.NewReader(at))
				if err != nil {
					t.Fatalf("at %d: %v", i+1, err)
				}
				if again := snapshot(t, back); !bytes.Equal(again, at) {
					t.Fatalf("at %d: snapshot does not round-trip:\n%s\n%s", i+1, at, again)
				}

				// A replica restored here, and a clone, catch up with the
				// rest of the log and end where the reference did; the
				// clone's progress does not reach s.
				clone := s.Clone()
				for j := i + 1; j < len(entries); j++ {
					back.Apply(uint64(j+1), entries[j])
					clone.Apply(uint64(j+1), entries[j])
				}
				if got := snapshot(t, back); !bytes.Equal(got, want) {
					t.Fatalf("replica restored at %d ends elsewhere", i+1)
				}
				if got := snapshot(t, clone); !bytes.Equal(got, want) {
					t.Fatalf("clone taken at %d ends elsewhere", i+1)
				}
				if got := snapshot(t, s); !bytes.Equal(got, at) {
					t.Fatalf("applying to the clone taken at %d changed the original", i+1)
				}
			}
		})
	}
}
