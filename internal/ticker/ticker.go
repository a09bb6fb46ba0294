// Package ticker runs a function every interval until a context ends:
// the one loop behind a node's periodic work (flushes, reports, trims,
// watches).
package ticker

import (
	"context"
	"time"
)

// Every calls fn every d until ctx ends; the first call comes after d.
func Every(ctx context.Context, d time.Duration, fn func(context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn(ctx)
		}
	}
}
