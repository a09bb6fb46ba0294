package cli

import (
	"slices"
	"testing"

	"github.com/sovra/sovra/client"
)

// TestUsageTableEnergy: the J/1K TOKENS column shows measured figures as
// they are, partly estimated ones with "~", none as "-", and the total
// weighs the rows by their tokens.
func TestUsageTableEnergy(t *testing.T) {
	rows := []client.UsageRow{
		{Key: "k1", Requests: 5, CompletionTokens: 1000, EnergyJoules: 8600, JoulesPer1kTokens: 8600, EnergyEstimated: true},
		{Key: "k2", Requests: 1, CompletionTokens: 200, EnergyJoules: 600, JoulesPer1kTokens: 3000},
		{Key: "k3", Requests: 2, CompletionTokens: 50},
	}
	tb := &table{}
	usageTable(tb, rows, []string{"key"})
	last := func(r []string) string { return r[len(r)-1] }
	if !slices.Equal(tb.cols[len(tb.cols)-2:], []string{"TTFT AVG (ms)", "J/1K TOKENS"}) {
		t.Fatalf("columns %q", tb.cols)
	}
	want := []string{"~8600.0", "3000.0", "-", "~7666.7"} // total: 9,200 J for 1,200 tokens
	for i, w := range want {
		if got := last(tb.rows[i]); got != w {
			t.Errorf("row %d: %q, want %q", i, got, w)
		}
	}
}
