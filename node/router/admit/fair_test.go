package admit

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/internal/testwait"
)

func TestFIFOWithinKey(t *testing.T) {
	q := New(Config{Slots: 1, MaxQueue: 8})
	holder := mustAcquire(t, q, "k")
	out := make(chan outcome, 5)
	enqueueAll(t, q, []string{"k", "k", "k", "k", "k"}, out)
	got := grantOrder(t, holder, 5, out)
	if want := []string{"k0", "k1", "k2", "k3", "k4"}; !slices.Equal(got, want) {
		t.Fatalf("grant order %v, want %v", got, want)
	}
	wantStats(t, q, Stats{Slots: 1})
}

func TestRoundRobinAcrossKeys(t *testing.T) {
	tests := []struct {
		name     string
		arrivals []string
		want     []string
	}{
		{
			name:     "keys take turns, each in arrival order",
			arrivals: []string{"a", "a", "a", "b", "b", "c"},
			want:     []string{"a0", "b0", "c0", "a1", "b1", "a2"},
		},
		{
			name:     "turns follow the order keys first arrived",
			arrivals: []string{"a", "b", "c", "b", "a"},
			want:     []string{"a0", "b0", "c0", "a1", "b1"},
		},
		{
			name:     "the empty key is a key",
			arrivals: []string{"a", "a", "", "a"},
			want:     []string{"a0", "0", "a1", "a2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := New(Config{Slots: 1, MaxQueue: 16})
			holder := mustAcquire(t, q, "x")
			out := make(chan outcome, len(tt.arrivals))
			enqueueAll(t, q, tt.arrivals, out)
			if got := grantOrder(t, holder, len(tt.arrivals), out); !slices.Equal(got, tt.want) {
				t.Fatalf("grant order %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFlooderCannotStarve(t *testing.T) {
	q := New(Config{Slots: 1, MaxQueue: 64})
	holder := mustAcquire(t, q, "flood")
	out := make(chan outcome, 51)
	enqueueAll(t, q, slices.Repeat([]string{"flood"}, 50), out)
	enqueueAll(t, q, []string{"quiet"}, out)
	order := grantOrder(t, holder, 51, out)
	if at := slices.Index(order, "quiet0"); at < 0 || at > 1 {
		t.Fatalf("the quiet key was served %d-th after 50 flooding waiters, want within 2 hand-offs", at+1)
	}
}

func TestFullQueue(t *testing.T) {
	q := New(Config{Slots: 1, MaxQueue: 4})
	holder := mustAcquire(t, q, "x")
	out := make(chan outcome, 16)
	enqueueAll(t, q, []string{"a", "a", "a", "a"}, out)
	wantStats(t, q, Stats{Running: 1, Queued: 4, Slots: 1})

	// The only waiting key holds every place: it is over its share.
	_, err := q.Acquire(context.Background(), "a")
	re := mustReject(t, err, ErrKeyOverShare)
	if !strings.Contains(re.Error(), "4 requests waiting for 1 slot") {
		t.Errorf("message %q does not describe the queue", re.Error())
	}

	// A second key has a share of 2: each arrival pushes out a's newest.
	for i, victim := range []string{"a3", "a2"} {
		spawn(context.Background(), q, "b", fmt.Sprintf("b%d", i), out)
		o := recv(t, out)
		if o.tag != victim {
			t.Fatalf("%s was pushed out, want %s", o.tag, victim)
		}
		mustReject(t, o.err, ErrKeyOverShare)
		testwait.For(t, 10*time.Second, "b queued", func() bool { return waitingOf(q, "b") == i+1 })
		wantStats(t, q, Stats{Running: 1, Queued: 4, Slots: 1})
	}

	// Both keys now hold their share.
	for _, key := range []string{"a", "b"} {
		_, err := q.Acquire(context.Background(), key)
		mustReject(t, err, ErrKeyOverShare)
	}

	// A third key pushes out the newest waiter of the keys holding most.
	spawn(context.Background(), q, "c", "c0", out)
	if o := recv(t, out); o.tag != "b1" {
		t.Fatalf("%s was pushed out (err %v), want b1", o.tag, o.err)
	}
	testwait.For(t, 10*time.Second, "c queued", func() bool { return waitingOf(q, "c") == 1 })

	got := grantOrder(t, holder, 4, out)
	if want := []string{"a0", "b0", "c0", "a1"}; !slices.Equal(got, want) {
		t.Fatalf("grant order %v, want %v", got, want)
	}
	wantStats(t, q, Stats{Slots: 1})
}

// waitingOf is how many waiting places key holds in q.
func waitingOf(q *Queue, key string) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.wait.count(key)
}

func TestFairQueueJoinsAtEnd(t *testing.T) {
	var f fairQueue
	now := testwait.NewClock().Now()
	tags := make(map[*waiter]string)
	push := func(key, tag string) { tags[f.push(key, now)] = tag }
	push("a", "a0")
	push("a", "a1")
	push("b", "b0")
	push("b", "b1")
	var got []string
	got = append(got, tags[f.pop()])
	push("c", "c0") // joins behind b and a, whose turns come first
	for f.len() > 0 {
		got = append(got, tags[f.pop()])
	}
	if want := []string{"a0", "b0", "a1", "c0", "b1"}; !slices.Equal(got, want) {
		t.Fatalf("pop order %v, want %v", got, want)
	}
	if f.pop() != nil || f.keyCount() != 0 || len(f.keys) != 0 {
		t.Fatal("empty queue still holds keys")
	}
}

func TestFairQueueAhead(t *testing.T) {
	tests := []struct {
		name    string
		waiting []string
		key     string
		want    int
	}{
		{"empty", nil, "a", 0},
		{"own only", []string{"a", "a"}, "a", 2},
		{"new key passes a flood", []string{"a", "a", "a", "a"}, "b", 1},
		{"one each round", []string{"a", "a", "a", "b", "c", "c"}, "b", 1 + 2 + 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f fairQueue
			for _, key := range tt.waiting {
				f.push(key, testwait.NewClock().Now())
			}
			if got := f.ahead(tt.key); got != tt.want {
				t.Fatalf("ahead(%q) = %d, want %d", tt.key, got, tt.want)
			}
		})
	}
}

// TestOverShareNamesTheKeyHonestly: a request that sent no API key is
// not told about "this API key" when the queue refuses it.
func TestOverShareNamesTheKeyHonestly(t *testing.T) {
	tests := []struct {
		name      string
		key       string
		want, not string
	}{
		{name: "a request with a key", key: "a", want: "for this API key", not: "without an API key"},
		{name: "a request without a key", key: "", want: "without an API key", not: "this API key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := New(Config{Slots: 1, MaxQueue: 2})
			holder := mustAcquire(t, q, "x")
			out := make(chan outcome, 2)
			enqueueAll(t, q, []string{tt.key, tt.key}, out)
			_, err := q.Acquire(context.Background(), tt.key)
			msg := mustReject(t, err, ErrKeyOverShare).Error()
			if !strings.Contains(msg, tt.want) || strings.Contains(msg, tt.not) {
				t.Errorf("message %q: want %q in it and not %q", msg, tt.want, tt.not)
			}
			grantOrder(t, holder, 2, out)
		})
	}
}
