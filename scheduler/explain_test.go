package scheduler

import (
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
)

func explainWorld(t *testing.T) *world {
	w := newWorld(t)
	w.node("cordoned", gpus(h800, 8), "jurisdiction=EU")
	w.node("down", gpus(h800, 8), "jurisdiction=EU")
	w.node("us", gpus(h800, 8), "jurisdiction=US")
	w.node("nolabel", gpus(h800, 8))
	w.node("a100x2", gpus(a100, 2), "jurisdiction=EU")
	w.node("l40s", gpus(l40s, 8), "jurisdiction=EU")
	w.node("h800x8", gpus(h800, 8), "jurisdiction=EU")
	w.node("h100x4", gpus(h100, 4), "jurisdiction=EU")
	w.node("holder", gpus(h100, 4), "jurisdiction=EU")
	w.status("cordoned", state.NodeCordoned, time.Hour)
	w.status("down", state.NodeDown, time.Minute)
	w.deploy("big", "llama3.1:405b", 2, constraints("jurisdiction=EU", "gpu.model in (H800,H100,A100)"))
	w.place("big", state.PlacementReady, "holder")
	return w
}

func TestExplainSaysWhyForEveryNode(t *testing.T) {
	w := explainWorld(t)
	e := Explain(w.s, "big", opts())
	if e.Err != nil || e.Status != StatusOK {
		t.Fatalf("explanation %s %q, err %v", e.Status, e.Reason, e.Err)
	}
	cases := []struct {
		node    string
		verdict Verdict
		filter  string
		reason  string // a regular expression
	}{
		{"a100x2", VerdictRejected, FilterVRAM, `^VRAM short by \d+\.\d GiB on the best split of 2×A100 80GiB$`},
		{"cordoned", VerdictRejected, FilterNodeReady, `^node is cordoned$`},
		{"down", VerdictRejected, FilterNodeReady, `^node is down \(for 1m0s, within the grace of 5m0s\)$`},
		{"h100x4", VerdictPlaced, "", ``},
		{"h800x8", VerdictFeasible, "", ``},
		{"holder", VerdictHolds, "", `^holds a replica \(ready\)$`},
		{"l40s", VerdictRejected, FilterGPUModel, `^no GPU matches gpu\.model in \(H800,H100,A100\): node has 8×L40S 45GiB$`},
		{"nolabel", VerdictRejected, FilterLabels, `^label jurisdiction is missing \(want jurisdiction=EU\)$`},
		{"us", VerdictRejected, FilterLabels, `^label jurisdiction=US does not match jurisdiction=EU$`},
	}
	if len(e.Nodes) != len(cases) {
		t.Fatalf("%d nodes explained, want %d", len(e.Nodes), len(cases))
	}
	for i, tc := range cases {
		t.Run(tc.node, func(t *testing.T) {
			n := e.Nodes[i]
			if n.Node != tc.node || n.Verdict != tc.verdict || n.Filter != tc.filter || !regexp.MustCompile(tc.reason).MatchString(n.Reason) {
				t.Fatalf("got %+v\nwant %s %s %s", n, tc.verdict, tc.filter, tc.reason)
			}
			if tc.verdict == VerdictFeasible && (n.Score <= 0 || len(n.Scores) == 0 || len(n.GPUs) == 0) {
				t.Fatalf("feasible node without score or layout: %+v", n)
			}
		})
	}
	text := e.String()
	for _, want := range []string{"deployment big (llama3.1:405b, needs 231.", "us ", "label jurisdiction=US does not match", "score "} {
		if !strings.Contains(text, want) {
			t.Errorf("String() lacks %q:\n%s", want, text)
		}
	}
}

func TestExplainFeasibleScoresFollowBinPack(t *testing.T) {
	w := explainWorld(t)
	w.deploy("big", "llama3.1:405b", 1, constraints("jurisdiction=EU"))
	e := Explain(w.s, "big", opts())
	var h800, l40 NodeExplanation
	for _, n := range e.Nodes {
		switch n.Node {
		case "h800x8":
			h800 = n
		case "l40s":
			l40 = n
		}
	}
	if h800.Verdict != VerdictFeasible || l40.Verdict != VerdictFeasible || l40.Score <= h800.Score {
		t.Fatalf("want both feasible and the smaller node scored higher: h800 %+v l40s %+v", h800, l40)
	}
}

func TestExplainEdgeCases(t *testing.T) {
	cases := []struct {
		name       string
		deployment string
		edit       func(w *world)
		wantStatus Status
		wantReason string
		wantErr    error
	}{
		{"unknown deployment", "nope", nil, "", "no such deployment", ErrUnknownDeployment},
		{"bad constraint", "big", func(w *world) {
			w.deploy("big", "llama3.1:405b", 2, constraints("jurisdiction in (EU"))
		}, StatusInvalid, `bad constraint "jurisdiction in (EU": missing )`, nil},
		{"unknown model", "big", func(w *world) {
			w.deploy("big", "nobody/nothing:1b", 2)
		}, StatusInvalid, `model figures unknown: "nobody/nothing:1b" is neither built in nor registered`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := explainWorld(t)
			if tc.edit != nil {
				tc.edit(w)
			}
			e := Explain(w.s, tc.deployment, opts())
			if !errors.Is(e.Err, tc.wantErr) || (tc.wantErr == nil && e.Err != nil) {
				t.Fatalf("err %v, want %v", e.Err, tc.wantErr)
			}
			if e.Status != tc.wantStatus || !strings.Contains(e.Reason, tc.wantReason) {
				t.Fatalf("got %s %q, want %s with %q", e.Status, e.Reason, tc.wantStatus, tc.wantReason)
			}
			if tc.wantStatus == StatusInvalid && (len(e.Nodes) != 1 || e.Nodes[0].Verdict != VerdictHolds) {
				t.Fatalf("nodes %+v, want the holder only", e.Nodes)
			}
		})
	}
}

func TestInvalidDeploymentKeepsItsReplicas(t *testing.T) {
	w := explainWorld(t)
	w.deploy("big", "llama3.1:405b", 2, constraints("jurisdiction=EU", "zone in ()"))
	p := w.schedule(opts())
	got, d := nodesOf(t, p, "big")
	if d.Status != StatusInvalid || len(got) != 1 || got[0] != "holder" || p.Changes() != 0 {
		t.Fatalf("status %s %q on %v with %d changes", d.Status, d.Reason, got, p.Changes())
	}
}
