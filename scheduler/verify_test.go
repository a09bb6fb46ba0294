package scheduler

import (
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/sovra/sovra/cluster/state"
)

func verifyWorld(t *testing.T) (*world, Plan) {
	w := newWorld(t)
	w.node("a", gpus(h100, 2), "jurisdiction=EU")
	w.node("b", gpus(h100, 2), "jurisdiction=US")
	w.node("c", gpus(l40s, 1), "jurisdiction=EU")
	w.deploy("d", "llama3.1:70b", 1, constraints("jurisdiction=EU"))
	w.deploy("e", "llama3.1:8b", 1)
	return w, w.schedule(opts())
}

func TestVerifyRejectsBrokenPlans(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(w *world, p *Plan)
		want   error
	}{
		{"untouched", func(*world, *Plan) {}, nil},
		{"over-committed GPU", func(_ *world, p *Plan) {
			p.Deployment("d").Placements[0].GPUs[0].Bytes = 80 * gibi
		}, ErrInfeasible},
		{"GPU the node lacks", func(_ *world, p *Plan) {
			p.Deployment("d").Placements[0].GPUs[0].Index = 7
		}, ErrInfeasible},
		{"constraint broken", func(_ *world, p *Plan) {
			p.Deployment("d").Placements[0].Node = "b"
		}, ErrInfeasible},
		{"no reservation", func(_ *world, p *Plan) {
			p.Deployment("d").Placements[0].GPUs = nil
		}, ErrInfeasible},
		{"twice on a node", func(_ *world, p *Plan) {
			d := p.Deployment("e")
			d.Placements = append(d.Placements, d.Placements[0])
		}, ErrInfeasible},
		{"deployment changed since", func(w *world, _ *Plan) {
			w.deploy("d", "llama3.1:70b", 2, constraints("jurisdiction=EU"))
		}, ErrStale},
		{"deployment added since", func(w *world, _ *Plan) {
			w.deploy("f", "llama3.1:8b", 1)
		}, ErrStale},
		{"node cordoned since", func(w *world, p *Plan) {
			w.status(p.Deployment("d").Placements[0].Node, state.NodeCordoned, 0)
		}, ErrStale},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, p := verifyWorld(t)
			tc.break_(w, &p)
			err := Verify(w.s, p, opts())
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}

func TestSetPlacementsNamesChangedDeploymentsOnly(t *testing.T) {
	w, p := verifyWorld(t)
	got := p.SetPlacements().Deployments
	want := map[string][]string{"d": {"c"}, "e": {"a"}} // d just fits the L40S: bin-pack
	if !maps.EqualFunc(got, want, slices.Equal[[]string]) {
		t.Fatalf("first plan commits %v, want %v", got, want)
	}
	w.commit(p, state.PlacementReady)
	w.deploy("e", "llama3.1:8b", 2)
	p = w.schedule(opts())
	got = p.SetPlacements().Deployments
	if len(got) != 1 || len(got["e"]) != 2 {
		t.Fatalf("second plan commits %v, want e alone on two nodes", got)
	}
}
