package state

import (
	"bytes"
	"strings"
	"testing"
)

func rec(action string) AuditRecord {
	return AuditRecord{Time: 10, Actor: "admin", Action: action, Target: "d1", Source: "127.0.0.1"}
}

func TestAuditIsRecordedWithTheCommand(t *testing.T) {
	a := newApplier(t)
	a.raw(entryAudited(t, TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d1", Model: "m"}}, rec("deployment.create")))
	a.raw(entryAudited(t, TypePutDeployment, PutDeployment{Deployment: Deployment{Name: "d1", Model: "m"}, Create: true}, rec("deployment.create")))
	a.raw(entryAudited(t, TypeDeleteDeployment, DeleteDeployment{Name: "d1"}, rec("deployment.delete")))
	want := []struct{ action, outcome string }{{"deployment.create", "ok"}, {"deployment.create", "exists"}, {"deployment.delete", "ok"}}
	if len(a.s.Audit) != len(want) {
		t.Fatalf("audit %+v", a.s.Audit)
	}
	for i, w := range want {
		e := a.s.Audit[i]
		if e.Action != w.action || e.Outcome != w.outcome || e.Seq != uint64(i+1) || e.Index != uint64(i+1) || e.Actor != "admin" {
			t.Errorf("entry %d: %+v, want %s %s", i, e, w.action, w.outcome)
		}
	}
	if b := VerifyAudit(a.s.AuditAnchor, a.s.Audit); b != nil {
		t.Fatalf("chain broken: %+v", b)
	}
	// An idempotent replay records nothing more.
	e := entryKeyed(t, TypeNoop, 0, "k", nil)
	a.raw(e)
	n := len(a.s.Audit)
	a.raw(e)
	if len(a.s.Audit) != n {
		t.Fatal("a replay was recorded")
	}
}

func TestAppendAudit(t *testing.T) {
	many := make([]AuditRecord, MaxAuditBatch+1)
	for i := range many {
		many[i] = rec("auth.failed")
	}
	cases := []struct {
		name    string
		records []AuditRecord
		code    string
	}{
		{"a batch", []AuditRecord{{Time: 1, Actor: "anonymous", Action: "auth.failed", Outcome: "denied"}, rec("snapshot.restore")}, ""},
		{"no actor", []AuditRecord{{Action: "x"}}, "invalid"},
		{"no action", []AuditRecord{rec("x"), {Actor: "a"}}, "invalid"},
		{"too many", many, "invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			before := withoutIndex(t, a.s)
			wantErr(t, a.do(TypeAppendAudit, AppendAudit{Records: tc.records}), tc.code)
			if tc.code != "" {
				unchangedBut(t, before, a.s)
				return
			}
			if len(a.s.Audit) != len(tc.records) || a.s.Audit[0].Outcome != "denied" {
				t.Fatalf("audit %+v", a.s.Audit)
			}
		})
	}
}

func TestAuditFieldsAreClipped(t *testing.T) {
	a := newApplier(t)
	a.ok(TypeAppendAudit, AppendAudit{Records: []AuditRecord{{Actor: "a", Action: "x", Detail: strings.Repeat("d", 5000)}}})
	if n := len(a.s.Audit[0].Detail); n != maxAuditField {
		t.Fatalf("detail of %d bytes kept", n)
	}
}

func auditOf(t *testing.T, n int) *applier {
	a := newApplier(t)
	for i := range n {
		a.ok(TypeAppendAudit, AppendAudit{Records: []AuditRecord{{Time: int64(i), Actor: "admin", Action: "a"}}})
	}
	return a
}

func TestTrimAuditKeepsTheChainVerifiable(t *testing.T) {
	cases := []struct {
		name       string
		before     uint64
		kept       int
		anchorSeq  uint64
		nextSeqWas uint64
	}{
		{"nothing", 1, 5, 0, 6},
		{"a prefix", 3, 3, 2, 6},
		{"everything", 99, 0, 5, 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := auditOf(t, 5)
			a.ok(TypeTrimAudit, TrimAudit{Before: tc.before})
			if len(a.s.Audit) != tc.kept || a.s.AuditAnchor.Seq != tc.anchorSeq {
				t.Fatalf("kept %d, anchor %+v", len(a.s.Audit), a.s.AuditAnchor)
			}
			a.ok(TypeAppendAudit, AppendAudit{Records: []AuditRecord{rec("after")}})
			last := a.s.Audit[len(a.s.Audit)-1]
			if last.Seq != tc.nextSeqWas {
				t.Fatalf("next entry seq %d, want %d", last.Seq, tc.nextSeqWas)
			}
			if b := VerifyAudit(a.s.AuditAnchor, a.s.Audit); b != nil {
				t.Fatalf("chain broken after a trim: %+v", b)
			}
		})
	}
}

func TestVerifyAuditFindsTheFirstBrokenLink(t *testing.T) {
	cases := []struct {
		name   string
		damage func(s *State)
		seq    uint64
	}{
		{"intact", func(*State) {}, 0},
		{"edited actor", func(s *State) { s.Audit[2].Actor = "someone" }, 3},
		{"edited and rehashed", func(s *State) { s.Audit[1].Target = "x"; s.Audit[1].Hash = s.Audit[1].ComputeHash() }, 3},
		{"removed entry", func(s *State) { s.Audit = append(s.Audit[:1], s.Audit[2:]...) }, 3},
		{"removed first entry", func(s *State) { s.Audit = s.Audit[1:] }, 2},
		{"edited anchor", func(s *State) { s.AuditAnchor.Hash = "x" }, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := auditOf(t, 5).s
			tc.damage(s)
			b := VerifyAudit(s.AuditAnchor, s.Audit)
			switch {
			case tc.seq == 0 && b != nil:
				t.Fatalf("intact chain reported broken: %+v", b)
			case tc.seq != 0 && (b == nil || b.Seq != tc.seq || b.Reason == ""):
				t.Fatalf("break %+v, want at %d", b, tc.seq)
			}
		})
	}
}

func TestAuditIsBounded(t *testing.T) {
	a := newApplier(t)
	batch := make([]AuditRecord, MaxAuditBatch)
	for i := range batch {
		batch[i] = rec("x")
	}
	for range MaxAuditEntries/MaxAuditBatch + 2 {
		a.ok(TypeAppendAudit, AppendAudit{Records: batch})
	}
	if len(a.s.Audit) != MaxAuditEntries || a.s.AuditAnchor.Seq != 2*MaxAuditBatch {
		t.Fatalf("%d entries, anchor %+v", len(a.s.Audit), a.s.AuditAnchor)
	}
	if b := VerifyAudit(a.s.AuditAnchor, a.s.Audit); b != nil {
		t.Fatalf("chain broken: %+v", b)
	}
}

func TestEditedSnapshotIsRestoredAndDetected(t *testing.T) {
	// Restore accepts a snapshot whose audit log was edited: verifying
	// is the audit routes' job, not Decode's.
	s := auditOf(t, 3).s
	snap := snapshot(t, s)
	edited := bytes.Replace(snap, []byte(`"time":1,`), []byte(`"time":2,`), 1)
	back, err := Decode(bytes.NewReader(edited))
	if err != nil {
		t.Fatal(err)
	}
	if b := VerifyAudit(back.AuditAnchor, back.Audit); b == nil || b.Seq != 2 {
		t.Fatalf("break %+v, want at 2", b)
	}
}
