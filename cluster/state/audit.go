package state

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// AuditRecord is what a proposer says of one admin action: who (a key id,
// or "node:<id>"), what, on what, from where and when (its clock, Unix
// ms). It never holds a secret, a prompt or a completion.
type AuditRecord struct {
	Time   int64  `json:"time"`
	Actor  string `json:"actor"`
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	Source string `json:"source,omitempty"`
	// Outcome is "ok" or an error code. A record attached to a command
	// (Command.Audit) gets the command's outcome from Apply instead.
	Outcome string `json:"outcome,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// AuditEntry is one record of the append-only audit log. Seq counts
// entries from 1 and survives trimming; Prev is the hash of the entry
// before (or of the anchor of the trimmed prefix) and Hash this entry's,
// so an entry edited or removed breaks the chain.
type AuditEntry struct {
	Seq   uint64 `json:"seq"`
	Index uint64 `json:"index"`
	AuditRecord
	Prev string `json:"prev"`
	Hash string `json:"hash,omitempty"`
}

// AuditAnchor stands for the trimmed prefix of the log: the sequence
// number and hash of the last entry trimmed (zero before any trim).
type AuditAnchor struct {
	Seq  uint64 `json:"seq,omitempty"`
	Hash string `json:"hash,omitempty"`
}

// AppendAudit appends records that belong to no command of their own
// (failed authentication, batched; actions outside the state such as a
// snapshot restore or a raft membership change).
type AppendAudit struct {
	Records []AuditRecord `json:"records"`
}

// TrimAudit drops the entries before sequence number Before (retention,
// as the proposer's clock and settings see it); the anchor keeps the
// chain verifiable.
type TrimAudit struct {
	Before uint64 `json:"before"`
}

// Bounds of the audit log, kept by Apply.
const (
	// MaxAuditEntries bounds the log whatever the retention: past it the
	// oldest entries are trimmed.
	MaxAuditEntries = 100000
	// MaxAuditBatch bounds the records of one AppendAudit.
	MaxAuditBatch = 1000
	maxAuditField = 512
)

// ComputeHash is the entry's hash: SHA-256 over its JSON encoding
// without the hash itself.
func (e AuditEntry) ComputeHash() string {
	e.Hash = ""
	b, err := json.Marshal(e)
	if err != nil {
		panic(fmt.Sprintf("state: audit entry not encodable: %v", err))
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// auditHead is the sequence number and hash the next entry chains to.
func (s *State) auditHead() (uint64, string) {
	if n := len(s.Audit); n > 0 {
		return s.Audit[n-1].Seq, s.Audit[n-1].Hash
	}
	return s.AuditAnchor.Seq, s.AuditAnchor.Hash
}

func clip(s string) string {
	if len(s) > maxAuditField {
		return s[:maxAuditField]
	}
	return s
}

// appendAudit appends one entry at index with the given outcome.
func (s *State) appendAudit(index uint64, r AuditRecord, outcome string) {
	seq, prev := s.auditHead()
	r = AuditRecord{Time: r.Time, Actor: clip(r.Actor), Action: clip(r.Action), Target: clip(r.Target),
		Source: clip(r.Source), Outcome: clip(outcome), Detail: clip(r.Detail)}
	e := AuditEntry{Seq: seq + 1, Index: index, AuditRecord: r, Prev: prev}
	e.Hash = e.ComputeHash()
	s.Audit = append(s.Audit, e)
	if len(s.Audit) > MaxAuditEntries {
		s.trimAuditBefore(s.Audit[len(s.Audit)-MaxAuditEntries].Seq)
	}
}

// outcomeCode is how an attached audit record states a command's outcome.
func outcomeCode(o Outcome) string {
	switch {
	case o.ErrCode != "":
		return o.ErrCode
	case o.Skipped:
		return "skipped"
	}
	return "ok"
}

func (s *State) appendAuditCmd(index uint64, c *AppendAudit) Outcome {
	if len(c.Records) > MaxAuditBatch {
		return fail("invalid", "at most %d audit records at once", MaxAuditBatch)
	}
	for _, r := range c.Records {
		if r.Actor == "" || r.Action == "" {
			return fail("invalid", "an audit record needs an actor and an action")
		}
	}
	for _, r := range c.Records {
		s.appendAudit(index, r, r.Outcome)
	}
	return Outcome{}
}

func (s *State) trimAudit(_ uint64, c *TrimAudit) Outcome {
	s.trimAuditBefore(c.Before)
	return Outcome{}
}

// trimAuditBefore drops the entries before seq, moving the anchor.
func (s *State) trimAuditBefore(seq uint64) {
	n := 0
	for n < len(s.Audit) && s.Audit[n].Seq < seq {
		n++
	}
	if n == 0 {
		return
	}
	last := s.Audit[n-1]
	s.AuditAnchor = AuditAnchor{Seq: last.Seq, Hash: last.Hash}
	// Reslicing frees the trimmed entries when append next moves the
	// array, so a log trimmed at every append still costs O(1) each.
	s.Audit = s.Audit[n:]
}

// AuditBreak is the first broken link of the audit chain.
type AuditBreak struct {
	Seq    uint64 `json:"seq"`
	Reason string `json:"reason"`
}

// VerifyAudit checks the chain from anchor through entries and returns
// its first broken link, or nil.
func VerifyAudit(anchor AuditAnchor, entries []AuditEntry) *AuditBreak {
	seq, prev := anchor.Seq, anchor.Hash
	for _, e := range entries {
		switch {
		case e.Seq != seq+1:
			return &AuditBreak{Seq: e.Seq, Reason: fmt.Sprintf("sequence number %d follows %d: an entry is missing", e.Seq, seq)}
		case e.Prev != prev:
			return &AuditBreak{Seq: e.Seq, Reason: "the previous entry's hash does not match: an entry before it was changed or removed"}
		case e.ComputeHash() != e.Hash:
			return &AuditBreak{Seq: e.Seq, Reason: "the entry does not match its hash: it was changed"}
		}
		seq, prev = e.Seq, e.Hash
	}
	return nil
}

// dispatchKeys applies the key and audit commands; ok is false for other
// types.
func (s *State) dispatchKeys(index uint64, d decoded) (Outcome, bool) {
	switch d.typ {
	case TypePutAPIKey:
		return applyBody(index, d, s.putAPIKey), true
	case TypeUpdateAPIKey:
		return applyBody(index, d, s.updateAPIKey), true
	case TypeRotateAPIKey:
		return applyBody(index, d, s.rotateAPIKey), true
	case TypeDeleteAPIKey:
		return applyBody(index, d, s.deleteAPIKey), true
	case TypeTouchAPIKeys:
		return applyBody(index, d, s.touchAPIKeys), true
	case TypeAppendAudit:
		return applyBody(index, d, s.appendAuditCmd), true
	case TypeTrimAudit:
		return applyBody(index, d, s.trimAudit), true
	}
	return Outcome{}, false
}
