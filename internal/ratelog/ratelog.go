// Package ratelog keeps a failure that repeats from flooding the log: the
// first occurrence of a key is logged, then at most one line per interval,
// which says how many occurrences it stands for. zap's sampler counts per
// message and per second and drops the rest silently; this says what it
// left out.
package ratelog

import (
	"sync"
	"time"
)

// DefaultEvery is the interval of a Limiter whose Every is zero.
const DefaultEvery = 30 * time.Second

// maxKeys bounds the keys a Limiter remembers; past it, keys quiet for
// two intervals are forgotten.
const maxKeys = 1024

// Limiter decides which occurrences of a repeating event are logged. The
// zero value is ready to use; it is safe for concurrent use.
type Limiter struct {
	// Every is the least time between two lines of one key
	// (DefaultEvery when zero).
	Every time.Duration
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu   sync.Mutex
	keys map[string]*entry
}

type entry struct {
	last       time.Time // when a line was last let through
	suppressed int       // occurrences since then that were not
}

// Allow reports whether this occurrence of key should be logged, and, when
// it should, how many occurrences since the last line were not (the line
// should say so).
func (l *Limiter) Allow(key string) (ok bool, suppressed int) {
	now := l.now()
	every := l.every()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[string]*entry{}
	}
	e := l.keys[key]
	if e == nil {
		l.forgetQuiet(now, every)
		l.keys[key] = &entry{last: now}
		return true, 0
	}
	if now.Sub(e.last) < every {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return true, n
}

// Reset forgets key: its next occurrence is logged as a first one (call it
// when the failure has healed).
func (l *Limiter) Reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.keys, key)
}

// forgetQuiet drops keys quiet for two intervals once there are too many.
func (l *Limiter) forgetQuiet(now time.Time, every time.Duration) {
	if len(l.keys) < maxKeys {
		return
	}
	for k, e := range l.keys {
		if now.Sub(e.last) > 2*every {
			delete(l.keys, k)
		}
	}
}

func (l *Limiter) now() time.Time {
	if l.Now != nil {
		return l.Now()
	}
	return time.Now()
}

func (l *Limiter) every() time.Duration {
	if l.Every > 0 {
		return l.Every
	}
	return DefaultEvery
}
