// Package linreg is the model the linearizability checks (porcupine) hold
// sovra's histories to: a set of integer registers, one per key, written
// and read; a write whose outcome is unknown may take effect at any time
// after its call.
package linreg

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// Input is one operation on a register: a write of Value, or a read.
type Input struct {
	Key   string
	Write bool
	Value int
}

// Output is what the operation saw: the value read, or for a write,
// whether its outcome is unknown.
type Output struct {
	Value   int
	Unknown bool
}

// Model checks each key's register on its own; a register starts at 0.
var Model = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(Input).Key
			byKey[k] = append(byKey[k], op)
		}
		out := make([][]porcupine.Operation, 0, len(byKey))
		for _, ops := range byKey {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return 0 },
	Step: func(st, in, out any) (bool, any) {
		i, o := in.(Input), out.(Output)
		if i.Write {
			return true, i.Value
		}
		return o.Value == st.(int), st
	},
	DescribeOperation: func(in, out any) string {
		i, o := in.(Input), out.(Output)
		if i.Write {
			return fmt.Sprintf("put(%s, %d) unknown=%v", i.Key, i.Value, o.Unknown)
		}
		return fmt.Sprintf("get(%s) -> %d", i.Key, o.Value)
	},
}
