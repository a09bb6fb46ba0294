package main

// A node's live heap is a few MB, below Go's smallest collection target
// (4 MB at the default GOGC), so under load the collector ran about 15
// times a second, each cycle waking its workers on every core. A node
// therefore keeps heapFloorBytes of heap that it never touches: the
// collector's target becomes twice that plus the live data, it runs
// about seven times less often (74 collections in 20,000 closed-loop
// requests, 10 with the floor), and the floor costs no resident memory (fresh
// pages the program never writes are not backed) and at most that much
// more garbage between collections, however large the live heap grows.
// An operator's GOGC or GOMEMLIMIT leaves the collector as they set it.
const heapFloorBytes = 16 << 20

var heapFloor []byte

// raiseHeapFloor sets the floor once, unless the environment tunes the
// collector.
func raiseHeapFloor(getenv func(string) string) {
	if heapFloor != nil || getenv("GOGC") != "" || getenv("GOMEMLIMIT") != "" {
		return
	}
	heapFloor = make([]byte, heapFloorBytes)
}
