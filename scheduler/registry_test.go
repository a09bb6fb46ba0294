package scheduler

import (
	"slices"
	"strings"
	"testing"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/models"
)

// coderSpec is a 7B dense model that is not built in.
func coderSpec(name string) state.ModelSpec {
	return state.ModelSpec{
		Name: name, Architecture: "qwen2", Parameters: 7_600_000_000, FileSize: 4_700_000_000,
		Layers: 28, Embedding: 3584, Heads: 28, KVHeads: 4, HeadDimK: 128, HeadDimV: 128, ContextLength: 32768,
	}
}

func (w *world) register(m state.ModelSpec) {
	w.t.Helper()
	w.apply(state.TypeRegisterModel, state.RegisterModel{Model: m})
}

func TestRegisteredModels(t *testing.T) {
	huge := coderSpec("acme/coder:7b")
	huge.FileSize = 500 * gibi
	cases := []struct {
		name       string
		setup      func(w *world)
		model      string
		want       []string
		wantStatus Status
		wantReason string
	}{
		{
			name:  "unknown model waits for its figures",
			model: "acme/coder:7b", want: []string{}, wantStatus: StatusInvalid,
			wantReason: ReasonFiguresUnknown + `: "acme/coder:7b"`,
		},
		{
			name:  "registered model is placed",
			setup: func(w *world) { w.register(coderSpec("acme/coder:7b")) },
			model: "acme/coder:7b", want: []string{"a"}, wantStatus: StatusOK,
		},
		{
			name:  "found under any name form",
			setup: func(w *world) { w.register(coderSpec("Acme/Coder")) },
			model: "registry.ollama.ai/acme/coder:latest", want: []string{"a"}, wantStatus: StatusOK,
		},
		{
			name:  "too large for every node",
			setup: func(w *world) { w.register(huge) },
			model: "acme/coder:7b", want: []string{}, wantStatus: StatusUnplaceable,
			wantReason: "short of VRAM",
		},
		{
			name: "on-disk node preferred",
			setup: func(w *world) {
				w.register(coderSpec("acme/coder:7b"))
				w.onDisk("b", "acme/coder:7b")
			},
			model: "acme/coder:7b", want: []string{"b"}, wantStatus: StatusOK,
		},
		{
			name: "the catalog wins a name both know",
			setup: func(w *world) {
				m := coderSpec("llama3.1:8b")
				m.FileSize = 500 * gibi
				w.register(m)
			},
			model: "llama3.1:8b", want: []string{"a"}, wantStatus: StatusOK,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			w.node("a", gpus(a100, 1))
			w.node("b", gpus(a100, 1))
			if tc.setup != nil {
				tc.setup(w)
			}
			w.deploy("d", tc.model, 1)
			p := w.schedule(opts())
			got, d := nodesOf(t, p, "d")
			if !slices.Equal(got, tc.want) {
				t.Fatalf("nodes %v, want %v (%s %q)", got, tc.want, d.Status, d.Reason)
			}
			if d.Status != tc.wantStatus || !strings.Contains(d.Reason, tc.wantReason) {
				t.Fatalf("status %s %q, want %s containing %q", d.Status, d.Reason, tc.wantStatus, tc.wantReason)
			}
		})
	}
}

func TestRegisteredModelIsSizedLikeACatalogEntry(t *testing.T) {
	// A model registered in the state reserves what the same figures
	// reserve as an entry of the configured catalog.
	spec := coderSpec("acme/coder:7b")
	reserve := func(register func(w *world, o *Options)) uint64 {
		w := newWorld(t)
		w.node("a", gpus(a100, 1))
		o := opts()
		register(w, &o)
		w.deploy("d", "acme/coder:7b", 1)
		_, d := nodesOf(t, w.schedule(o), "d")
		if len(d.Placements) != 1 {
			t.Fatalf("placements %+v (%s)", d.Placements, d.Reason)
		}
		return d.Placements[0].Bytes()
	}
	inState := reserve(func(w *world, _ *Options) { w.register(spec) })
	inCatalog := reserve(func(_ *world, o *Options) {
		o.Catalog = models.NewCatalog()
		if err := o.Catalog.Register(spec.Model()); err != nil {
			t.Fatal(err)
		}
	})
	if inState != inCatalog || inState < spec.FileSize {
		t.Fatalf("registered in the state it reserves %d bytes, in the catalog %d", inState, inCatalog)
	}
}

func TestUnregisteringKeepsReplicas(t *testing.T) {
	// Unregistering a model in use makes its deployment invalid; its
	// replicas stay where they are until the figures are known again.
	w := newWorld(t)
	w.node("a", gpus(a100, 1))
	w.node("b", gpus(a100, 1))
	w.register(coderSpec("acme/coder:7b"))
	w.deploy("d", "acme/coder:7b", 2)
	w.commit(w.schedule(opts()), state.PlacementReady)
	w.apply(state.TypeUnregisterModel, state.UnregisterModel{Name: "acme/coder:7b"})
	p := w.schedule(opts())
	got, d := nodesOf(t, p, "d")
	if d.Status != StatusInvalid || !strings.HasPrefix(d.Reason, ReasonFiguresUnknown) || p.Changes() != 0 {
		t.Fatalf("status %s %q with %d changes", d.Status, d.Reason, p.Changes())
	}
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("nodes %v, want both kept", got)
	}
	// Registered again, the deployment is settled: nothing moves.
	w.register(coderSpec("acme/coder:7b"))
	if p := w.schedule(opts()); p.Changes() != 0 || p.Deployment("d").Status != StatusOK {
		t.Fatalf("after registering again: %d changes, %s", p.Changes(), p.Deployment("d").Status)
	}
}
