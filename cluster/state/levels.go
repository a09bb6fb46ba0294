package state

import (
	"errors"
	"fmt"
)

// Versions of sovra differ in the command types they know. A node's
// command level is the highest command type its build applies; types are
// numbered in order and never reused, so a node knows every type up to
// its level. Each node reports its level in its registration
// (Node.CommandLevel); the leader commits a command that older versions
// may not skip only once every member reports a level that holds its type
// (cluster's version gate), and the state remembers the highest such type
// it applied (State.CommandLevel), so a version too old for a state
// refuses its snapshot instead of misreading it.

// LegacyLevel is the level of a node that reports none: every version
// before levels were reported knew the types up to it. It never changes.
const LegacyLevel = TypeRollupUsage

// builtinLevel is the highest command type of this version's code. Raise
// it with every new type.
const builtinLevel = TypeRecordEnergy

// LevelIdleByIndex is the first command level whose SetDeploymentIdle
// honours UnusedSinceIndex (the version that brought record-energy).
const LevelIdleByIndex = TypeRecordEnergy

// Level is this build's command level: the highest command type it
// applies.
func Level() Type {
	l := builtinLevel
	for t := range nextCommands {
		l = max(l, t)
	}
	return l
}

// LevelOf is the level a node reports, reading a missing one (a version
// before levels) as LegacyLevel.
func LevelOf(n *Node) Type {
	if n == nil || n.CommandLevel == 0 {
		return LegacyLevel
	}
	return n.CommandLevel
}

// nextCommands are the command types of a later version, for test builds
// that play one (build tag sovra_next, next.go); empty otherwise.
var nextCommands = map[Type]func(*State, uint64, decoded) Outcome{}

// ErrUnknownType means a committed entry's command type is unknown to this
// version and not marked ignorable: applying anything after it would make
// this node's state differ from the others', so the node must stop until
// it is upgraded. It is never a rejection: the entry is valid to the
// versions that wrote it.
var ErrUnknownType = errors.New("command type unknown to this version")

// UnknownTypeError is the ErrUnknownType of one entry.
type UnknownTypeError struct {
	Index uint64 // the entry's log index
	Type  Type   // its command type
}

func (e *UnknownTypeError) Error() string {
	return fmt.Sprintf("log entry %d has command type %d, which this version (command level %d) does not know and may not skip",
		e.Index, byte(e.Type), byte(Level()))
}

func (e *UnknownTypeError) Unwrap() error { return ErrUnknownType }

// ErrNewerVersion means a snapshot was written by a version newer than
// this one, in a form this one cannot read without losing part of it.
var ErrNewerVersion = errors.New("written by a newer version of sovra")

// NeedsLevel is the command level every member must have before the entry
// may be committed: its type, unless older versions may skip it without
// differing (FlagIgnorable, and neither an idempotency key nor an audit
// record, whose remembered outcome would read "skipped" there); 0 when
// any version may take it.
func NeedsLevel(entry []byte) (Type, error) {
	d, err := decode(entry)
	if err != nil {
		return 0, err
	}
	if d.flags&FlagIgnorable != 0 && d.key == "" && d.audit == nil {
		return 0, nil
	}
	return d.typ, nil
}
