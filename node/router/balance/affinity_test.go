package balance

import (
	"testing"
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

func TestFollowUpPrefersItsReplica(t *testing.T) {
	m := model(2, 50, 100, 50)
	cands := []Candidate{cand("a", m, 0, 0), cand("b", m, 1, 0), cand("c", m, 0, 0)}
	b := New(Config{Rand: seeded()})
	first := Request{Model: "m", Prefix: PrefixKeys("m", chatOf(1))}
	b.Served(first, "b")
	follow := Request{Model: "m", Prefix: PrefixKeys("m", chatOf(2))}
	if i, why := b.Pick(follow, cands); cands[i].Node != "b" || why != ReasonAffinity {
		t.Fatalf("follow-up went to %s (%s), want b (affinity)", cands[i].Node, why)
	}
	// A new conversation has no affinity.
	other := Request{Model: "m", Prefix: PrefixKeys("m", []Message{{"user", "hello"}})}
	if i, why := b.Pick(other, cands); why != ReasonTTF || cands[i].Node == "b" {
		t.Fatalf("new conversation went to %s (%s)", cands[i].Node, why)
	}
	// Affinity off.
	off := New(Config{Factor: 0.5, Rand: seeded()})
	off.Served(first, "b")
	if _, why := off.Pick(follow, cands); why != ReasonTTF {
		t.Fatalf("factor < 1 still used affinity")
	}
}

func TestAffinityIsBoundedByLoad(t *testing.T) {
	m := model(2, 50, 100, 50)
	b := New(Config{Rand: seeded()})
	first := Request{Model: "m", Prefix: PrefixKeys("m", chatOf(1))}
	b.Served(first, "b")
	follow := Request{Model: "m", Prefix: PrefixKeys("m", chatOf(2))}
	for _, tc := range []struct {
		name     string
		bBusy    int
		othersB  int
		affinity bool
	}{
		{"free slot", 1, 0, true},
		{"full but within 1.25x of average", 3, 3, true}, // 4 <= ceil(1.25*10/3)=5
		{"beyond 1.25x of average", 6, 1, false},         // 7 > ceil(1.25*9/3)=4
		{"full while the others idle", 2, 0, false},      // 3 > ceil(1.25*3/3)=2
		// The edge: one more request takes b exactly to the bound, or
		// one past it.
		{"exactly at the bound", 6, 4, true}, // 7 <= ceil(1.25*15/3)=7
		{"one over the bound", 7, 4, false},  // 8 > ceil(1.25*16/3)=7
	} {
		t.Run(tc.name, func(t *testing.T) {
			cands := []Candidate{cand("a", m, tc.othersB, 0), cand("b", m, min(tc.bBusy, 2), max(0, tc.bBusy-2)), cand("c", m, tc.othersB, 0)}
			i, why := b.Pick(follow, cands)
			if (why == ReasonAffinity) != tc.affinity {
				t.Fatalf("picked %s (%s), affinity wanted: %v", cands[i].Node, why, tc.affinity)
			}
		})
	}
}

func TestAffinityBoundWeighsCapacity(t *testing.T) {
	b := New(Config{Rand: seeded()})
	first := Request{Model: "m", Prefix: PrefixKeys("m", chatOf(1))}
	b.Served(first, "big")
	follow := Request{Model: "m", Prefix: PrefixKeys("m", chatOf(2))}
	small, big := model(1, 50, 50, 50), model(4, 50, 200, 50)
	// big holds 8 with 4 slots at 4x the speed: 16 of 17 capacity units, so
	// its share of 10 busy is ~9.4; 1.25x that allows 12.
	cands := []Candidate{cand("small", small, 1, 1), cand("big", big, 4, 4)}
	if i, why := b.Pick(follow, cands); cands[i].Node != "big" || why != ReasonAffinity {
		t.Fatalf("picked %s (%s)", cands[i].Node, why)
	}
}

func TestPublishedKeysReachPeers(t *testing.T) {
	a, peer := NewAffinity(16), NewAffinity(16)
	keys := PrefixKeys("m", chatOf(1))
	a.Publish(keys[1:2], "node-a")
	got, next := a.Recent(0)
	if len(got) != 1 || got[0] != keys[1] || next != 1 {
		t.Fatalf("recent %v next %d", got, next)
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
	if len(all) != recentKeys || next2 != recentKeys+11 || all[len(all)-1] != recentKeys+9 {
		t.Fatalf("ring: %d keys, next %d", len(all), next2)
	}
	if again, _ := a.Recent(next2 + 100); len(again) != recentKeys {
		t.Fatalf("a restarted publisher should resend its ring, got %d", len(again))
	}
}
