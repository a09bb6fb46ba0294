//go:build sovra_next

package state

// This file is compiled only with the build tag sovra_next: a build that
// plays the next version of sovra for the mixed-version tests
// (internal/chaos/compat_test.go). It knows two command types more than
// this version: one that older versions may skip and one they may not.

// Command types of the next version, numbered after this version's own
// so they stay "the next ones" as types are added.
const (
	// TypeNextHint is written with FlagIgnorable; it changes nothing, so
	// a version that skips it stays identical.
	TypeNextHint = builtinLevel + 1
	// TypeNextPriority sets a deployment's priority; a version that
	// skipped it would place differently, so it may not be skipped.
	TypeNextPriority = builtinLevel + 2
)

// NextPriority is the body of TypeNextPriority.
type NextPriority struct {
	Name     string `json:"name"`
	Priority int    `json:"priority"`
}

func init() {
	nextCommands[TypeNextHint] = func(_ *State, _ uint64, _ decoded) Outcome {
		return value(map[string]bool{"hint": true})
	}
	nextCommands[TypeNextPriority] = func(s *State, index uint64, d decoded) Outcome {
		return applyBody(index, d, s.nextPriority)
	}
}

func (s *State) nextPriority(index uint64, c *NextPriority) Outcome {
	d, ok := s.Deployments[c.Name]
	if !ok {
		return fail("not_found", "deployment %q does not exist", c.Name)
	}
	d.Priority, d.ModifiedIndex = c.Priority, index
	return value(*d)
}
