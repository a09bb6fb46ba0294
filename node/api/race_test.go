//go:build race

package api

// raceEnabled: the race detector's shadow memory inflates RSS several
// times, so the memory tests then bound allocated bytes only.
const raceEnabled = true
