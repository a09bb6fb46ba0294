package node

import (
	"testing"
	"time"

	"github.com/sovra/sovra/cluster/state"
)

func TestParseAuditRetention(t *testing.T) {
	cases := []struct {
		in   string
		want AuditRetention
		bad  bool
	}{
		{in: "20000", want: AuditRetention{Count: 20000}},
		{in: "90d", want: AuditRetention{Age: 90 * 24 * time.Hour}},
		{in: "500, 720h", want: AuditRetention{Count: 500, Age: 720 * time.Hour}},
		{in: "0", want: AuditRetention{}},
		{in: "soon", bad: true},
		{in: "-3h", bad: true},
		{in: "xd", bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseAuditRetention(tc.in)
			if (err != nil) != tc.bad || got != tc.want {
				t.Fatalf("%+v %v", got, err)
			}
		})
	}
}

func TestAuditRetentionCut(t *testing.T) {
	now := time.UnixMilli(100_000)
	entries := make([]state.AuditEntry, 5)
	for i := range entries {
		entries[i] = state.AuditEntry{Seq: uint64(11 + i), AuditRecord: state.AuditRecord{Time: int64(i) * 10_000}}
	}
	cases := []struct {
		name string
		r    AuditRetention
		want uint64
	}{
		{"no bound", AuditRetention{}, 0},
		{"count not reached", AuditRetention{Count: 5}, 0},
		{"count", AuditRetention{Count: 2}, 14},
		{"age", AuditRetention{Age: 75 * time.Second}, 14},
		{"the stricter of both", AuditRetention{Count: 4, Age: 65 * time.Second}, 15},
		{"everything too old", AuditRetention{Age: time.Second}, 16},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.r.cut(entries, now); got != tc.want {
				t.Fatalf("cut %d, want %d", got, tc.want)
			}
		})
	}
}
