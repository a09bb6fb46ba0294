package admit

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
)

// BenchmarkAcquireRelease measures one Acquire and its Release: alone, and
// from GOMAXPROCS goroutines over one slot (every Acquire waits for a
// hand-off) and over GOMAXPROCS slots (contention on the lock only).
func BenchmarkAcquireRelease(b *testing.B) {
	ctx := context.Background()
	b.Run("uncontended", func(b *testing.B) {
		q := New(Config{Slots: 1})
		b.ReportAllocs()
		for b.Loop() {
			tk, err := q.Acquire(ctx, "k")
			if err != nil {
				b.Fatal(err)
			}
			tk.Release()
		}
	})
	procs := runtime.GOMAXPROCS(0)
	for _, slots := range []int{1, procs} {
		b.Run(fmt.Sprintf("contended/slots=%d", slots), func(b *testing.B) {
			q := New(Config{Slots: slots, MaxQueue: 4 * procs})
			var next atomic.Int32
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				key := fmt.Sprintf("key%d", next.Add(1)%4)
				for pb.Next() {
					tk, err := q.Acquire(ctx, key)
					if err != nil {
						b.Error(err)
						return
					}
					tk.Release()
				}
			})
		})
	}
}
