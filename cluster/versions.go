package cluster

import (
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/version"
)

// Mixed versions during a rolling upgrade. Every node reports its command
// level (state.Level: the highest command type its build applies) in its
// registration. The leader commits an entry only once every member of the
// raft configuration reports a level that holds what the entry needs
// (state.NeedsLevel): a new command type that older versions may not skip
// is refused with ErrUpgradeRequired until they are upgraded, while one
// they may skip (FlagIgnorable) goes through and they skip it with a
// warning. A snapshot restore and a join are held to the level of the
// state. A node that still meets a command type it does not know in its
// log (the gate was passed by a node downgraded since, say) stops
// applying and stops with ErrUpgradeRequired: it must not go on with a
// state that differs from the others'.

// gate refuses an entry that some member may not know.
func (c *Cluster) gate(entry []byte) error {
	level, err := state.NeedsLevel(entry)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if level <= state.LegacyLevel {
		return nil // every version that reports no level knows it
	}
	return c.requireLevel(level, "this command")
}

// requireLevel checks that every member of the raft configuration reports
// a command level of at least level; what names the thing that needs it.
func (c *Cluster) requireLevel(level state.Type, what string) error {
	conf, err := c.configuration()
	if err != nil {
		return err
	}
	var behind []string
	c.machine.Read(func(s *state.State) {
		for _, srv := range conf.Servers {
			n := s.Nodes[string(srv.ID)]
			switch {
			case n == nil:
				behind = append(behind, fmt.Sprintf("%s (not registered yet: its version is unknown)", srv.ID))
			case state.LevelOf(n) < level:
				behind = append(behind, fmt.Sprintf("%s (sovra %s, command level %d)", n.ID, orUnknown(n.Version), state.LevelOf(n)))
			}
		}
	})
	if len(behind) == 0 {
		return nil
	}
	verb := "do not"
	if len(behind) == 1 {
		verb = "does not"
	}
	return fmt.Errorf("%w: %s needs every member to run a version that knows command type %d, and %s %s: "+
		"upgrade them (sovra status shows each member's version) or remove them, then retry",
		ErrUpgradeRequired, what, level, strings.Join(behind, ", "), verb)
}

// checkJoiner refuses a node whose version cannot hold the cluster's
// state: it would stop at the first command it does not know.
func (c *Cluster) checkJoiner(n state.Node) error {
	var need state.Type
	c.machine.Read(func(s *state.State) { need = s.CommandLevel })
	if have := state.LevelOf(&n); have < need {
		return fmt.Errorf("%w: node %s runs sovra %s (command level %d), and the cluster's state holds commands up to type %d: "+
			"upgrade it to the version the members run before it joins", ErrUpgradeRequired, n.ID, orUnknown(n.Version), have, need)
	}
	return nil
}

func orUnknown(v string) string {
	if v == "" {
		return "of unknown version"
	}
	return v
}

// halt stops this node for good when its state machine met a command
// type it does not know (or a snapshot it cannot read): Run's owner sees
// JoinFailed close and Ready reports it.
func (c *Cluster) halt(why error) {
	err := fmt.Errorf("%w: this node runs sovra %s (command level %d) and stopped applying the replicated log: %w. "+
		"Its state stays as it was before that point, so that it never differs from the other members'. "+
		"Upgrade this node to the version the other members run and start it again: it resumes from its log",
		ErrUpgradeRequired, version.Version, state.Level(), why)
	c.log.Error("cannot apply the replicated log; stopping", zap.Error(err))
	c.stopFor(err)
}

// stopFor records why this node gives up (a join that cannot succeed, a
// log it cannot apply) and closes JoinFailed once.
func (c *Cluster) stopFor(err error) {
	if c.joinErr.CompareAndSwap(nil, &err) {
		close(c.joinStop)
	}
}

// isHalt reports an outcome of a machine that stopped at an unknown type.
func isHalt(out state.Outcome) bool { return errors.Is(out.Err(), state.ErrUnknownType) }
