package balance

import (
	"slices"
	"strings"
	"testing"

	"github.com/sovra/sovra/node/router/load"
)

func chatOf(turns int) []Message {
	msgs := []Message{{"system", "You are terse."}}
	for i := range turns {
		msgs = append(msgs, Message{"user", "question " + string(rune('a'+i))})
		if i < turns-1 {
			msgs = append(msgs, Message{"assistant", "answer " + string(rune('a'+i))})
		}
	}
	return msgs
}

func TestPrefixKeysShareTheirPrefix(t *testing.T) {
	one, two := PrefixKeys("m", chatOf(1)), PrefixKeys("m", chatOf(2))
	if len(one) != 2 || len(two) != 4 {
		t.Fatalf("lengths %d %d", len(one), len(two))
	}
	if one[0] != two[0] || one[1] != two[1] {
		t.Fatal("a follow-up does not share its first keys")
	}
	if two[2] == two[1] || PrefixKeys("other", chatOf(1))[1] == one[1] {
		t.Fatal("keys do not depend on the messages and model")
	}
	if PrefixKeys("m", nil) != nil {
		t.Fatal("no messages, no keys")
	}
}

func TestPrefixBytesCoverTheirKeys(t *testing.T) {
	got := PrefixBytes([]Message{{"system", "abc"}, {"user", "hello"}})
	if want := []int{9, 18}; !slices.Equal(got, want) {
		t.Fatalf("PrefixBytes = %v, want %v", got, want)
	}
	if PrefixBytes(nil) != nil {
		t.Fatal("no messages, no lengths")
	}
}

// TestHoldersOfAPrefix checks the table: a replica that served a prompt
// holds every prefix of it, the newest holder first, at most maxHolders
// per key, and a key's holders are found from any longer prompt.
func TestHoldersOfAPrefix(t *testing.T) {
	a := NewAffinity(64)
	first, follow := PrefixKeys("m", chatOf(1)), PrefixKeys("m", chatOf(2))
	a.Record(first, "b")
	if got := a.HeldBy(follow, "b"); got != 2 {
		t.Fatalf("b holds %d keys of the follow-up, want 2 (the first turn's prompt)", got)
	}
	if got := a.HeldBy(follow, "c"); got != 0 {
		t.Fatalf("c holds %d keys, want none", got)
	}
	a.Record(follow[:1], "c") // c served another chat with the same system prompt
	if got := a.Held(follow); got["b"] != 2 || got["c"] != 1 || len(got) != 2 {
		t.Fatalf("Held = %v, want b:2 c:1", got)
	}
	for i := range maxHolders + 3 {
		a.Record(follow[:1], string(rune('d'+i)))
	}
	if got := a.Held(follow[:1]); len(got) != maxHolders || got["b"] != 0 || got[string(rune('d'+maxHolders+2))] != 1 {
		t.Fatalf("holders of a shared key %v: want the %d newest", got, maxHolders)
	}
	if got := a.HeldBy(follow, "b"); got != 2 {
		t.Fatalf("b lost its own longer prefix: holds %d", got)
	}
}

func TestPublishedKeysReachPeers(t *testing.T) {
	a, peer := NewAffinity(16), NewAffinity(16)
	keys := PrefixKeys("m", chatOf(1))
	a.Publish(keys, "node-a")
	got, next := a.Recent(0)
	if !slices.Equal(got, keys) || next != 2 {
		t.Fatalf("recent %v next %d, want every key of the prompt", got, next)
	}
	peer.Merge("node-a", got)
	if held := peer.HeldBy(PrefixKeys("m", chatOf(2)), "node-a"); held != 2 {
		t.Fatalf("peer finds node-a holding %d keys, want 2", held)
	}
	if more, _ := a.Recent(next); len(more) != 0 {
		t.Fatalf("nothing new, got %v", more)
	}
	for i := range recentKeys + 10 {
		a.Publish([]uint64{uint64(i)}, "node-a")
	}
	all, next2 := a.Recent(next)
	if len(all) != recentKeys || next2 != recentKeys+12 || all[len(all)-1] != recentKeys+9 {
		t.Fatalf("ring: %d keys, next %d", len(all), next2)
	}
	if again, _ := a.Recent(next2 + 100); len(again) != recentKeys {
		t.Fatalf("a restarted publisher should resend its ring, got %d", len(again))
	}
}

// history is a conversation whose earlier turns take about kib KiB.
func history(kib int, turn string) []Message {
	return []Message{{"system", "You are terse."}, {"user", strings.Repeat("x", kib*1024)}, {"assistant", "ok"}, {"user", turn}}
}

func conv(msgs []Message) Request {
	return Request{Model: "m", Prefix: PrefixKeys("m", msgs), PrefixBytes: PrefixBytes(msgs)}
}

// prefilled is a replica that measured its prefill: perKiB ms per KiB of
// prompt its cache does not hold, 0.1 KiB on average.
func prefilled(slots int, ttftMs, tps, out, perKiB float64) load.Model {
	m := model(slots, ttftMs, tps, out)
	m.PrefillMsPerKiB, m.PromptKiB = perKiB, 0.1
	return m
}

// TestFollowUpStaysWhileTheSavingWins checks the rule of prefix affinity:
// a follow-up goes to the replica holding its history exactly while the
// prefill it saves there (8 KiB at 50 ms a KiB: 400 ms) outweighs the
// wait for a slot there (a queue of 300 ms requests).
func TestFollowUpStaysWhileTheSavingWins(t *testing.T) {
	m := prefilled(1, 60, 100, 24, 50) // 300 ms a request
	first := history(8, "first question")
	follow := append(slices.Clone(first), Message{"assistant", "answer"}, Message{"user", "next"})
	for _, tc := range []struct {
		name   string
		queued int // on the holder, which also runs one
		want   string
		why    Reason
	}{
		// Running one: the follow-up waits 150 ms there, saves 400 ms.
		{"a short wait", 0, "b", ReasonAffinity},
		// Running one, one queued: waits 450 ms, saves 400 ms.
		{"a wait longer than the saving", 1, "a", ReasonTTF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := New(Config{Rand: seeded()})
			b.Served(conv(first), "b")
			cands := []Candidate{cand("a", m, 0, 0), cand("b", m, 1, tc.queued)}
			i, why := b.Pick(conv(follow), cands)
			if cands[i].Node != tc.want || why != tc.why {
				t.Fatalf("follow-up went to %s (%s), want %s (%s)", cands[i].Node, why, tc.want, tc.why)
			}
		})
	}
	t.Run("affinity off", func(t *testing.T) {
		b := New(Config{Factor: 0.5, Rand: seeded()})
		b.Served(conv(first), "b")
		cands := []Candidate{cand("a", m, 0, 0), cand("b", m, 1, 0)}
		if i, why := b.Pick(conv(follow), cands); cands[i].Node != "a" || why != ReasonTTF {
			t.Fatalf("factor < 1: follow-up went to %s (%s), want a (ttf)", cands[i].Node, why)
		}
	})
}

// TestSharedPrefixSpreads checks that a prefix many replicas hold (one
// system prompt on every request) favours none of them, and that one
// replica holding a short shared prefix does not draw requests into its
// queue: what it saves is small against a wait.
func TestSharedPrefixSpreads(t *testing.T) {
	m := prefilled(1, 60, 100, 24, 50)
	system := []Message{{"system", strings.Repeat("be brief. ", 100)}} // 1 KiB: 50 ms
	ask := func(q string) Request { return conv(append(slices.Clone(system), Message{"user", q})) }
	b := New(Config{Rand: seeded()})
	b.Served(ask("earlier"), "a")
	// Only a holds the system prompt: among idle replicas it wins, by
	// the 50 ms it saves.
	idle := []Candidate{cand("a", m, 0, 0), cand("b", m, 0, 0), cand("c", m, 0, 0)}
	for range 20 {
		if i, why := b.Pick(ask("new question"), idle); idle[i].Node != "a" || why != ReasonAffinity {
			t.Fatalf("among idle replicas a question went to %s (%s), want a, the holder of its system prompt (affinity)", idle[i].Node, why)
		}
	}
	// But a is busy (150 ms left).
	cands := []Candidate{cand("a", m, 1, 0), cand("b", m, 0, 0), cand("c", m, 0, 0)}
	if i, why := b.Pick(ask("new question"), cands); cands[i].Node == "a" || why != ReasonTTF {
		t.Fatalf("a question sharing only the system prompt went to the busy holder %s (%s)", cands[i].Node, why)
	}
	// Every replica holds it: the emptiest wins, by time to finish.
	b.Served(ask("other"), "b")
	b.Served(ask("third"), "c")
	cands = []Candidate{cand("a", m, 1, 0), cand("b", m, 1, 1), cand("c", m, 0, 0)}
	if i, why := b.Pick(ask("new question"), cands); cands[i].Node != "c" || why != ReasonTTF {
		t.Fatalf("went to %s (%s), want c (ttf)", cands[i].Node, why)
	}
}

// TestPrefillWeighsEachReplicasSpeed checks that a long prompt no cache
// holds goes where it is evaluated fastest, though that replica decodes
// no faster: the prefill cost is each replica's own.
func TestPrefillWeighsEachReplicasSpeed(t *testing.T) {
	slowFill, fastFill := prefilled(1, 60, 100, 24, 80), prefilled(1, 60, 100, 24, 20)
	long := conv(history(16, "summarize"))
	b := New(Config{Rand: seeded()})
	cands := []Candidate{cand("slow", slowFill, 0, 0), cand("fast", fastFill, 0, 0)}
	for range 20 {
		if i, _ := b.Pick(long, cands); cands[i].Node != "fast" {
			t.Fatal("a long uncached prompt went to the replica with the slow prefill")
		}
	}
}

// TestCachedPromptShortensTTFTBoundedly checks the bound on what a cache
// hit can save: the replica's time to first token never drops below
// minPrefillShare of its average.
func TestCachedPromptShortensTTFTBoundedly(t *testing.T) {
	m := prefilled(1, 100, 100, 24, 50)
	m.PromptKiB = 10 // its requests were mostly uncached
	e := newEstimator([]Candidate{{Load: load.Load{Model: m}}}, 0)
	if got := e.prefill(m, 0); got != -(1-minPrefillShare)*100 {
		t.Fatalf("prefill of a fully cached prompt %.1f ms, want %.1f", got, -(1-minPrefillShare)*100)
	}
	if got := e.prefill(m, 12); got != 100 {
		t.Fatalf("prefill of 12 KiB uncached %.1f ms, want 2 KiB above the average at 50 ms a KiB = 100", got)
	}
	unmeasured := model(1, 100, 100, 24)
	if got := newEstimator([]Candidate{{Load: load.Load{Model: unmeasured}}}, 0).prefill(unmeasured, 12); got != 0 {
		t.Fatalf("without a measured cost per KiB the prompt changes nothing; got %.1f", got)
	}
}
