package state

import (
	"fmt"
	"testing"
)

const (
	benchNodes       = 1000
	benchDeployments = 5000
)

// bigState builds a state the size of a large cluster: nodes with GPUs and
// labels, deployments with two replicas placed, and a full idempotency
// memory.
func bigState(tb testing.TB) *applier {
	tb.Helper()
	a := newApplier(tb)
	for i := range benchNodes {
		id := fmt.Sprintf("node-%04d", i)
		gpus := make([]GPU, 8)
		for g := range gpus {
			gpus[g] = GPU{Index: g, Model: "NVIDIA H800", MemoryBytes: 80 << 30, UUID: fmt.Sprintf("GPU-%04d-%d", i, g)}
		}
		a.ok(TypeRegisterNode, RegisterNode{Node: Node{
			ID: id, HTTPAddr: id + ":8080", RaftAddr: id + ":7000", Version: "v0.1.0",
			Labels: map[string]string{"jurisdiction": "EU", "rack": fmt.Sprintf("r%d", i%40)},
			GPUs:   gpus,
		}, Time: int64(i)})
	}
	for i := range benchDeployments {
		name := fmt.Sprintf("dep-%05d", i)
		a.ok(TypePutDeployment, PutDeployment{Deployment: Deployment{
			Name: name, Model: "llama3:8b", Replicas: 2, Constraints: []string{"jurisdiction=EU"}, Priority: i % 3,
		}})
	}
	plan := map[string][]string{}
	for i := range benchDeployments {
		plan[fmt.Sprintf("dep-%05d", i)] = []string{
			fmt.Sprintf("node-%04d", i%benchNodes),
			fmt.Sprintf("node-%04d", (i+1)%benchNodes),
		}
	}
	a.ok(TypeSetPlacements, SetPlacements{Deployments: plan})
	// Fill the idempotency memory with remembered writes, as a busy
	// cluster does.
	for i := range MaxIdempotencyKeys {
		d := i % benchDeployments
		a.raw(entryKeyed(tb, TypePutDeployment, 0, fmt.Sprintf("key-%d", i), PutDeployment{Deployment: Deployment{
			Name: fmt.Sprintf("dep-%05d", d), Model: "llama3:8b", Replicas: 2, Constraints: []string{"jurisdiction=EU"}, Priority: d % 3,
		}}))
	}
	return a
}

func BenchmarkApplyPutDeployment(b *testing.B) {
	a := bigState(b)
	entries := make([][]byte, 64)
	for i := range entries {
		entries[i] = entry(b, TypePutDeployment, PutDeployment{Deployment: Deployment{
			Name: fmt.Sprintf("dep-%05d", i*71%benchDeployments), Model: "llama3:70b", Replicas: 3,
			Constraints: []string{"jurisdiction=EU"},
		}})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if out := a.raw(entries[i%len(entries)]); out.ErrCode != "" {
			b.Fatal(out.ErrMsg)
		}
	}
}

func BenchmarkClone(b *testing.B) {
	s := bigState(b).s
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if c := s.Clone(); len(c.Deployments) != benchDeployments {
			b.Fatalf("clone has %d deployments", len(c.Deployments))
		}
	}
}

func BenchmarkEncodeSnapshot(b *testing.B) {
	s := bigState(b).s
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		snapshot(b, s)
	}
}
