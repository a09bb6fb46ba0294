package state

import (
	"encoding/json"
	"testing"
)

func hour(h int64) int64 { return 1_700_000_000/3600*3600 + h*3600 }

func bucket(start int64, key, model, node string, prompt, completion int64) UsageTotal {
	return UsageTotal{Start: start, Hours: 1, Key: key, Model: model, Node: node, Requests: 1,
		PromptTokens: prompt, CompletionTokens: completion}
}

// sumTokens is the prompt and completion tokens of every bucket.
func sumTokens(s *State) (prompt, completion, requests int64) {
	for _, b := range s.Usage {
		prompt += b.PromptTokens
		completion += b.CompletionTokens
		requests += b.Requests
	}
	return prompt, completion, requests
}

func TestRecordUsageCountsEachBatchOnce(t *testing.T) {
	b1 := RecordUsage{Node: "n1", Batch: 10, Buckets: []UsageTotal{bucket(hour(0), "k1", "m", "n1", 5, 7), bucket(hour(0), "k2", "m", "n2", 1, 1)}}
	b2 := RecordUsage{Node: "n1", Batch: 11, Buckets: []UsageTotal{bucket(hour(0), "k1", "m", "n1", 10, 20)}}
	other := RecordUsage{Node: "n2", Batch: 3, Buckets: []UsageTotal{bucket(hour(1), "k1", "m", "n2", 2, 2)}}
	tests := []struct {
		name           string
		batches        []RecordUsage
		prompt, compl  int64
		requests       int64
		wantDuplicates int
	}{
		{"one batch", []RecordUsage{b1}, 6, 8, 2, 0},
		{"a retried batch", []RecordUsage{b1, b1}, 6, 8, 2, 1},
		{"retried after the next one", []RecordUsage{b1, b2, b1}, 16, 28, 3, 1},
		{"another node's lower number", []RecordUsage{b1, other, b2, other}, 18, 30, 4, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			dups := 0
			for _, b := range tc.batches {
				if decodeValue[usageResult](t, a.ok(TypeRecordUsage, b)).Duplicate {
					dups++
				}
			}
			p, c, r := sumTokens(a.s)
			if p != tc.prompt || c != tc.compl || r != tc.requests || dups != tc.wantDuplicates {
				t.Fatalf("prompt %d completion %d requests %d duplicates %d, want %d %d %d %d",
					p, c, r, dups, tc.prompt, tc.compl, tc.requests, tc.wantDuplicates)
			}
		})
	}
}

func TestRecordUsageRefusesBadBatches(t *testing.T) {
	tests := []struct {
		name string
		body RecordUsage
	}{
		{"no node", RecordUsage{Batch: 1}},
		{"no batch number", RecordUsage{Node: "n1"}},
		{"not an hour", RecordUsage{Node: "n1", Batch: 1, Buckets: []UsageTotal{{Start: hour(0) + 1, Hours: 1, Key: "k"}}}},
		{"a day bucket", RecordUsage{Node: "n1", Batch: 1, Buckets: []UsageTotal{{Start: hour(0), Hours: 24, Key: "k"}}}},
		{"no key", RecordUsage{Node: "n1", Batch: 1, Buckets: []UsageTotal{{Start: hour(0), Hours: 1}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			if out := a.do(TypeRecordUsage, tc.body); out.ErrCode != "invalid" || len(a.s.Usage) != 0 || len(a.s.UsageBatches) != 0 {
				t.Fatalf("%+v; usage %v", out, a.s.Usage)
			}
		})
	}
}

func TestRollupUsageKeepsTheTotals(t *testing.T) {
	day := hour(0) - hour(0)%86400
	a := newApplier(t)
	a.ok(TypeRecordUsage, RecordUsage{Node: "n1", Batch: 1, Buckets: []UsageTotal{
		bucket(day, "k", "m", "n1", 1, 2), bucket(day+3600, "k", "m", "n2", 3, 4),
		bucket(day+86400, "k", "m", "n1", 5, 6), bucket(day-86400, "k", "m", "n1", 100, 100),
	}})
	tests := []struct {
		name          string
		cmd           RollupUsage
		buckets       int
		prompt, compl int64
	}{
		{"nothing old enough", RollupUsage{Before: day}, 4, 109, 112},
		{"the first day's hours become days", RollupUsage{Before: day + 86400}, 3, 109, 112},
		{"all of them", RollupUsage{Before: day + 2*86400}, 3, 109, 112},
		{"and the oldest day goes", RollupUsage{Before: day + 2*86400, DropBefore: day}, 2, 9, 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a.ok(TypeRollupUsage, tc.cmd)
			p, c, _ := sumTokens(a.s)
			if len(a.s.Usage) != tc.buckets || p != tc.prompt || c != tc.compl {
				t.Fatalf("%d buckets, %d/%d tokens; want %d, %d/%d", len(a.s.Usage), p, c, tc.buckets, tc.prompt, tc.compl)
			}
			mustInvariants(t, a.s)
		})
	}
	for _, b := range a.s.Usage {
		if b.Hours != 24 || b.Node != "" || b.Start%86400 != 0 {
			t.Fatalf("bucket not rolled up to a day: %+v", b)
		}
	}
}

// TestUsageStateSize gives the retained usage's size from the encoded
// size of a day bucket: keys × models × days day buckets (nodes merged),
// each its JSON in the snapshot plus its map key.
func TestUsageStateSize(t *testing.T) {
	b := UsageTotal{Start: 1_700_000_000 / 86400 * 86400, Hours: 24, Key: "key_0123456789abcdef", Model: "deepseek-r1:70b",
		Requests: 123456, Errors: 123, PromptTokens: 123456789, CompletionTokens: 123456789, TTFTMs: 12345678, TTFTCount: 123456}
	raw, err := json.Marshal(map[string]*UsageTotal{UsageKey(&b): &b})
	if err != nil {
		t.Fatal(err)
	}
	per := int64(len(raw))
	const keys, models, days = 1000, 20, 400
	total := per * keys * models * days
	t.Logf("one day bucket: %d bytes encoded; %d keys x %d models x %d days = %d buckets = %.2f GB (%.1f MB per 1%% of key-model pairs active)",
		per, keys, models, days, keys*models*days, float64(total)/1e9, float64(total)/1e6/100)
	if per > 400 {
		t.Fatalf("a bucket takes %d bytes", per)
	}
}
