package scheduler

import (
	"errors"
	"fmt"
	"github.com/sovra/sovra/models"
	"slices"
	"strings"
)

// ErrBadConstraint is returned, wrapped with the constraint and what is
// wrong with it, for a constraint that does not parse.
var ErrBadConstraint = errors.New("scheduler: bad constraint")

// GPUModelKey is the reserved constraint key that selects GPUs by model
// instead of nodes by label: "gpu.model in (H800,H100)". See MatchGPUModel.
const GPUModelKey = "gpu.model"

// Op is the operator of a constraint.
type Op string

// Operators. For a node without the key, != and notin hold and the
// others fail, as Kubernetes label selectors have it.
const (
	OpEq        Op = "="
	OpNotEq     Op = "!="
	OpIn        Op = "in"
	OpNotIn     Op = "notin"
	OpExists    Op = "exists"
	OpNotExists Op = "!exists"
)

// Constraint is one parsed constraint: a test of one node label or, for
// GPUModelKey, of a GPU's model.
type Constraint struct {
	Key    string
	Op     Op
	Values []string // one for = and !=, one or more for in and notin
}

// ParseConstraint parses one constraint:
//
//	key=value   key!=value   key in (a,b)   key notin (a,b)   key   !key
//
// Keys are letters, digits and . _ / - starting with a letter or digit;
// values the same without /. Spaces around parts are ignored. The key
// gpu.model takes =, !=, in and notin only.
func ParseConstraint(s string) (Constraint, error) {
	bad := func(format string, args ...any) (Constraint, error) {
		return Constraint{}, fmt.Errorf("%w %q: %s", ErrBadConstraint, s, fmt.Sprintf(format, args...))
	}
	rest := strings.TrimSpace(s)
	if rest == "" {
		return bad("empty")
	}
	if k, ok := strings.CutPrefix(rest, "!"); ok {
		k = strings.TrimSpace(k)
		if why := checkKey(k); why != "" {
			return bad("%s", why)
		}
		return finish(Constraint{Key: k, Op: OpNotExists}, bad)
	}
	key, rest := cutKey(rest)
	if why := checkKey(key); why != "" {
		return bad("%s", why)
	}
	c, why := parseOp(key, strings.TrimSpace(rest))
	if why != "" {
		return bad("%s", why)
	}
	return finish(c, bad)
}

// finish applies the rules of reserved keys.
func finish(c Constraint, bad func(string, ...any) (Constraint, error)) (Constraint, error) {
	if !strings.HasPrefix(c.Key, "gpu.") {
		return c, nil
	}
	if c.Key != GPUModelKey {
		return bad("unknown GPU attribute %q (only %s)", c.Key, GPUModelKey)
	}
	if c.Op == OpExists || c.Op == OpNotExists {
		return bad("%s takes =, !=, in or notin", GPUModelKey)
	}
	return c, nil
}

// cutKey splits s after its leading run of key characters.
func cutKey(s string) (key, rest string) {
	i := strings.IndexFunc(s, func(r rune) bool { return !isKeyRune(r) })
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

// parseOp parses what follows the key.
func parseOp(key, rest string) (Constraint, string) {
	c := Constraint{Key: key}
	var v string
	switch {
	case rest == "":
		c.Op = OpExists
		return c, ""
	case strings.HasPrefix(rest, "!="):
		c.Op, v = OpNotEq, rest[2:]
	case strings.HasPrefix(rest, "=="):
		c.Op, v = OpEq, rest[2:]
	case strings.HasPrefix(rest, "="):
		c.Op, v = OpEq, rest[1:]
	default:
		return parseSet(c, rest)
	}
	v = strings.TrimSpace(v)
	if why := checkValue(v); why != "" {
		return c, why
	}
	c.Values = []string{v}
	return c, ""
}

// parseSet parses "in (a,b)" or "notin (a,b)".
func parseSet(c Constraint, rest string) (Constraint, string) {
	word, list := cutKey(rest)
	switch word {
	case "in":
		c.Op = OpIn
	case "notin":
		c.Op = OpNotIn
	default:
		return c, fmt.Sprintf("want =, !=, in or notin after key %q, got %q", c.Key, rest)
	}
	list = strings.TrimSpace(list)
	if !strings.HasPrefix(list, "(") {
		return c, fmt.Sprintf("want ( after %s", word)
	}
	end := strings.IndexByte(list, ')')
	if end < 0 {
		return c, "missing )"
	}
	if tail := strings.TrimSpace(list[end+1:]); tail != "" {
		return c, fmt.Sprintf("unexpected %q after )", tail)
	}
	for _, v := range strings.Split(list[1:end], ",") {
		v = strings.TrimSpace(v)
		if why := checkValue(v); why != "" {
			return c, why
		}
		if !slices.Contains(c.Values, v) {
			c.Values = append(c.Values, v)
		}
	}
	return c, ""
}

func isKeyRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._/-", r)
}

func checkKey(k string) string {
	switch {
	case k == "":
		return "missing key"
	case !isAlnum(rune(k[0])):
		return fmt.Sprintf("key %q must start with a letter or digit", k)
	case strings.IndexFunc(k, func(r rune) bool { return !isKeyRune(r) }) >= 0:
		return fmt.Sprintf("key %q holds a character keys cannot hold", k)
	}
	return ""
}

func checkValue(v string) string {
	switch {
	case v == "":
		return "empty value"
	case strings.IndexFunc(v, func(r rune) bool { return !isKeyRune(r) || r == '/' }) >= 0:
		return fmt.Sprintf("value %q holds a character values cannot hold", v)
	}
	return ""
}

func isAlnum(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

// String returns the constraint in its canonical form.
func (c Constraint) String() string {
	switch c.Op {
	case OpExists:
		return c.Key
	case OpNotExists:
		return "!" + c.Key
	case OpIn, OpNotIn:
		return c.Key + " " + string(c.Op) + " (" + strings.Join(c.Values, ",") + ")"
	}
	return c.Key + string(c.Op) + strings.Join(c.Values, ",")
}

// IsGPU reports whether c selects GPUs rather than nodes.
func (c Constraint) IsGPU() bool { return c.Key == GPUModelKey }

// holds reports whether c holds for a value that is present or not.
func (c Constraint) holds(v string, present bool) bool {
	switch c.Op {
	case OpExists:
		return present
	case OpNotExists:
		return !present
	case OpEq, OpIn:
		return present && slices.Contains(c.Values, v)
	}
	return !present || !slices.Contains(c.Values, v) // != and notin
}

// MatchLabels says why c does not hold for a node's labels, or "".
func (c Constraint) MatchLabels(labels map[string]string) string {
	v, ok := labels[c.Key]
	if c.holds(v, ok) {
		return ""
	}
	switch {
	case c.Op == OpNotExists:
		return fmt.Sprintf("label %s=%s is present (want %s)", c.Key, v, c)
	case !ok:
		return fmt.Sprintf("label %s is missing (want %s)", c.Key, c)
	case c.Op == OpEq:
		return fmt.Sprintf("label %s=%s does not match %s", c.Key, v, c)
	}
	return fmt.Sprintf("label %s=%s does not satisfy %s", c.Key, v, c)
}

// MatchGPUModel reports whether a GPU model as nvidia-smi names it
// ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB") satisfies a
// gpu.model constraint. Both sides are compared in the canonical form of
// models.NormalizeGPUModel, the same one the node agent uses: "H100" and
// "A100" match the names above, "L40" does not match "NVIDIA L40S".
func (c Constraint) MatchGPUModel(model string) bool {
	named := false
	norm := models.NormalizeGPUModel(model)
	for _, v := range c.Values {
		if models.NormalizeGPUModel(v) == norm {
			named = true
			break
		}
	}
	return named == (c.Op == OpEq || c.Op == OpIn)
}

// Constraints are the parsed constraints of one deployment, node label
// tests apart from GPU model tests.
type Constraints struct {
	Labels []Constraint
	GPU    []Constraint
}

// ParseConstraints parses every constraint and joins the errors of those
// that do not parse.
func ParseConstraints(list []string) (Constraints, error) {
	var cs Constraints
	var errs []error
	for _, s := range list {
		c, err := ParseConstraint(s)
		switch {
		case err != nil:
			errs = append(errs, err)
		case c.IsGPU():
			cs.GPU = append(cs.GPU, c)
		default:
			cs.Labels = append(cs.Labels, c)
		}
	}
	return cs, errors.Join(errs...)
}

// MatchLabels says why the first label constraint that fails does so, or
// "".
func (cs Constraints) MatchLabels(labels map[string]string) string {
	for _, c := range cs.Labels {
		if why := c.MatchLabels(labels); why != "" {
			return why
		}
	}
	return ""
}

// failing returns the index of the first label constraint that fails, or
// -1.
func (cs Constraints) failing(labels map[string]string) int {
	for i, c := range cs.Labels {
		v, ok := labels[c.Key]
		if !c.holds(v, ok) {
			return i
		}
	}
	return -1
}

// MatchGPU reports whether a GPU model satisfies every GPU constraint.
func (cs Constraints) MatchGPU(model string) bool {
	for _, c := range cs.GPU {
		if !c.MatchGPUModel(model) {
			return false
		}
	}
	return true
}

// String joins the constraints in canonical form.
func (cs Constraints) String() string {
	parts := make([]string, 0, len(cs.Labels)+len(cs.GPU))
	for _, c := range cs.Labels {
		parts = append(parts, c.String())
	}
	for _, c := range cs.GPU {
		parts = append(parts, c.String())
	}
	return strings.Join(parts, ", ")
}
