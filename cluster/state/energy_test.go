package state

import (
	"bytes"
	"testing"
)

func ebucket(start int64, model, node string, mj, est, tokens int64) EnergyTotal {
	return EnergyTotal{Start: start, Hours: 1, Model: model, Node: node, MilliJoules: mj, EstimatedMilliJoules: est, OutputTokens: tokens}
}

// sumEnergy is the millijoules, estimated millijoules and tokens of
// every energy bucket.
func sumEnergy(s *State) (mj, est, tokens int64) {
	for _, b := range s.Energy {
		mj, est, tokens = mj+b.MilliJoules, est+b.EstimatedMilliJoules, tokens+b.OutputTokens
	}
	return mj, est, tokens
}

func TestRecordEnergyCountsEachBatchOnce(t *testing.T) {
	b1 := RecordEnergy{Node: "n1", Batch: 10, Buckets: []EnergyTotal{
		ebucket(hour(0), "llama3.1:8b", "n1", 5000, 0, 10), ebucket(hour(0), "qwen2.5:7b", "n1", 3000, 1000, 5)}}
	b2 := RecordEnergy{Node: "n1", Batch: 11, Buckets: []EnergyTotal{ebucket(hour(0), "llama3.1:8b", "n1", 7000, 7000, 20)}}
	other := RecordEnergy{Node: "n2", Batch: 3, Buckets: []EnergyTotal{ebucket(hour(1), "llama3.1:8b", "n2", 1, 0, 1)}}
	tests := []struct {
		name            string
		batches         []RecordEnergy
		mj, est, tokens int64
		buckets, dups   int
	}{
		{"one batch", []RecordEnergy{b1}, 8000, 1000, 15, 2, 0},
		{"a retried batch", []RecordEnergy{b1, b1}, 8000, 1000, 15, 2, 1},
		{"retried after the next one", []RecordEnergy{b1, b2, b1}, 15000, 8000, 35, 2, 1},
		{"another node's lower number", []RecordEnergy{b1, other, b2, other}, 15001, 8000, 36, 3, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			dups := 0
			for _, b := range tc.batches {
				if decodeValue[usageResult](t, a.ok(TypeRecordEnergy, b)).Duplicate {
					dups++
				}
			}
			mj, est, tokens := sumEnergy(a.s)
			if mj != tc.mj || est != tc.est || tokens != tc.tokens || len(a.s.Energy) != tc.buckets || dups != tc.dups {
				t.Fatalf("%d mJ (%d estimated), %d tokens, %d buckets, %d duplicates; want %d (%d), %d, %d, %d",
					mj, est, tokens, len(a.s.Energy), dups, tc.mj, tc.est, tc.tokens, tc.buckets, tc.dups)
			}
		})
	}
}

func TestRecordEnergyRefusesBadBatches(t *testing.T) {
	tests := []struct {
		name string
		body RecordEnergy
	}{
		{"no node", RecordEnergy{Batch: 1}},
		{"no batch number", RecordEnergy{Node: "n1"}},
		{"not an hour", RecordEnergy{Node: "n1", Batch: 1, Buckets: []EnergyTotal{{Start: hour(0) + 1, Hours: 1, Model: "m"}}}},
		{"a day bucket", RecordEnergy{Node: "n1", Batch: 1, Buckets: []EnergyTotal{{Start: hour(0), Hours: 24, Model: "m"}}}},
		{"no model", RecordEnergy{Node: "n1", Batch: 1, Buckets: []EnergyTotal{{Start: hour(0), Hours: 1}}}},
		{"negative energy", RecordEnergy{Node: "n1", Batch: 1, Buckets: []EnergyTotal{ebucket(hour(0), "m", "n1", -1, 0, 1)}}},
		{"more estimated than all", RecordEnergy{Node: "n1", Batch: 1, Buckets: []EnergyTotal{ebucket(hour(0), "m", "n1", 1, 2, 1)}}},
		{"negative tokens", RecordEnergy{Node: "n1", Batch: 1, Buckets: []EnergyTotal{ebucket(hour(0), "m", "n1", 1, 0, -1)}}},
		{"a good bucket before a bad one", RecordEnergy{Node: "n1", Batch: 1, Buckets: []EnergyTotal{
			ebucket(hour(0), "m", "n1", 1, 0, 1), {Start: hour(0), Hours: 1}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			if out := a.do(TypeRecordEnergy, tc.body); out.ErrCode != "invalid" || len(a.s.Energy) != 0 || len(a.s.EnergyBatches) != 0 {
				t.Fatalf("%+v; energy %v", out, a.s.Energy)
			}
		})
	}
}

func TestRollupUsageRollsEnergyUp(t *testing.T) {
	day := hour(0) - hour(0)%86400
	a := newApplier(t)
	a.ok(TypeRecordEnergy, RecordEnergy{Node: "n1", Batch: 1, Buckets: []EnergyTotal{
		ebucket(day, "m", "n1", 1, 0, 1), ebucket(day+3600, "m", "n2", 2, 2, 2),
		ebucket(day+86400, "m", "n1", 4, 0, 4), ebucket(day-86400, "m", "n1", 100, 0, 100),
	}})
	tests := []struct {
		name       string
		cmd        RollupUsage
		buckets    int
		mj, tokens int64
	}{
		{"nothing old enough", RollupUsage{Before: day}, 4, 107, 107},
		{"the first day's hours become a day", RollupUsage{Before: day + 86400}, 3, 107, 107},
		{"all of them", RollupUsage{Before: day + 2*86400}, 3, 107, 107},
		{"and the oldest day goes", RollupUsage{Before: day + 2*86400, DropBefore: day}, 2, 7, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a.ok(TypeRollupUsage, tc.cmd)
			mj, _, tokens := sumEnergy(a.s)
			if len(a.s.Energy) != tc.buckets || mj != tc.mj || tokens != tc.tokens {
				t.Fatalf("%d buckets, %d mJ, %d tokens; want %d, %d, %d", len(a.s.Energy), mj, tokens, tc.buckets, tc.mj, tc.tokens)
			}
		})
	}
	for _, b := range a.s.Energy {
		if b.Hours != 24 || b.Node != "" || b.Start%86400 != 0 {
			t.Fatalf("bucket not rolled up to a day: %+v", b)
		}
	}
	if _, est, _ := sumEnergy(a.s); est != 2 {
		t.Fatalf("%d mJ estimated after the rollup, want 2", est)
	}
}

func TestEnergyListWindow(t *testing.T) {
	a := newApplier(t)
	a.ok(TypeRecordEnergy, RecordEnergy{Node: "n1", Batch: 1, Buckets: []EnergyTotal{
		ebucket(hour(2), "b", "n1", 1, 0, 1), ebucket(hour(0), "a", "n1", 1, 0, 1), ebucket(hour(1), "a", "n1", 1, 0, 1)}})
	got := a.s.EnergyList(hour(1), hour(2))
	if len(got) != 1 || got[0].Start != hour(1) {
		t.Fatalf("window: %+v", got)
	}
	all := a.s.EnergyList(0, 0)
	if len(all) != 3 || all[0].Start != hour(0) || all[2].Model != "b" {
		t.Fatalf("all: %+v", all)
	}
}

// TestEnergySurvivesSnapshots: the energy buckets and batch numbers go
// through Clone and a snapshot unchanged, and a retry after a restore is
// still a retry.
func TestEnergySurvivesSnapshots(t *testing.T) {
	a := newApplier(t)
	b := RecordEnergy{Node: "n1", Batch: 7, Buckets: []EnergyTotal{ebucket(hour(0), "m", "n1", 1234, 34, 56)}}
	a.ok(TypeRecordEnergy, b)
	want := snapshot(t, a.s)
	if got := snapshot(t, a.s.Clone()); !bytes.Equal(got, want) {
		t.Fatalf("clone:\n%s\nwant\n%s", got, want)
	}
	var buf bytes.Buffer
	if err := a.s.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	restored, err := Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := snapshot(t, restored); !bytes.Equal(got, want) {
		t.Fatalf("restored:\n%s\nwant\n%s", got, want)
	}
	r := &applier{t: t, s: restored, next: a.next}
	if !decodeValue[usageResult](t, r.ok(TypeRecordEnergy, b)).Duplicate {
		t.Fatal("a retry after the restore was counted again")
	}
}
