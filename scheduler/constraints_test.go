package scheduler

import (
	"errors"
	"strings"
	"testing"
)

func TestParseConstraint(t *testing.T) {
	cases := []struct {
		in, want string
		op       Op
	}{
		{"jurisdiction=EU", "jurisdiction=EU", OpEq},
		{"  jurisdiction == EU ", "jurisdiction=EU", OpEq},
		{"jurisdiction!=US", "jurisdiction!=US", OpNotEq},
		{"zone in (a, b,a)", "zone in (a,b)", OpIn},
		{"zone in(a)", "zone in (a)", OpIn},
		{"zone notin (c)", "zone notin (c)", OpNotIn},
		{"topology.sovra.io/rack", "topology.sovra.io/rack", OpExists},
		{"! spot", "!spot", OpNotExists},
		{"gpu.model in (H800,H100)", "gpu.model in (H800,H100)", OpIn},
		{"gpu.model!=L40S", "gpu.model!=L40S", OpNotEq},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			c, err := ParseConstraint(tc.in)
			if err != nil || c.String() != tc.want || c.Op != tc.op {
				t.Fatalf("got %q op %s err %v, want %q op %s", c.String(), c.Op, err, tc.want, tc.op)
			}
		})
	}
}

func TestParseConstraintErrors(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", "empty"},
		{"   ", "empty"},
		{"=EU", "missing key"},
		{"jurisdiction=", "empty value"},
		{"jurisdiction in (EU", "missing )"},
		{"jurisdiction in EU", "want ( after in"},
		{"zone in ()", "empty value"},
		{"zone in (a,,b)", "empty value"},
		{"zone in (a) x", `unexpected "x" after )`},
		{"zone like a", `want =, !=, in or notin after key "zone", got "like a"`},
		{"-zone=a", `key "-zone" must start with a letter or digit`},
		{"zone=a b", `value "a b" holds a character values cannot hold`},
		{"zone=a/b", `value "a/b" holds a character`},
		{"!zone=a", `key "zone=a" holds a character keys cannot hold`},
		{"gpu.memory=80", `unknown GPU attribute "gpu.memory"`},
		{"gpu.model", "gpu.model takes =, !=, in or notin"},
		{"!gpu.model", "gpu.model takes =, !=, in or notin"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			_, err := ParseConstraint(tc.in)
			if !errors.Is(err, ErrBadConstraint) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrBadConstraint with %q", err, tc.want)
			}
		})
	}
}

func TestParseConstraintsJoinsErrors(t *testing.T) {
	cs, err := ParseConstraints([]string{"a=1", "b in (", "gpu.model=H100", "=x"})
	if !errors.Is(err, ErrBadConstraint) || !strings.Contains(err.Error(), `"b in ("`) || !strings.Contains(err.Error(), `"=x"`) {
		t.Fatalf("err %v", err)
	}
	if len(cs.Labels) != 1 || len(cs.GPU) != 1 {
		t.Fatalf("parsed %+v", cs)
	}
}

func TestMatchLabels(t *testing.T) {
	labels := map[string]string{"jurisdiction": "EU", "zone": "b"}
	cases := []struct {
		c, why string
	}{
		{"jurisdiction=EU", ""},
		{"jurisdiction=US", "label jurisdiction=EU does not match jurisdiction=US"},
		{"jurisdiction!=EU", "label jurisdiction=EU does not satisfy jurisdiction!=EU"},
		{"missing!=x", ""},
		{"missing=x", "label missing is missing (want missing=x)"},
		{"zone in (a,b)", ""},
		{"zone in (a,c)", "label zone=b does not satisfy zone in (a,c)"},
		{"zone notin (a,c)", ""},
		{"missing notin (a)", ""},
		{"zone notin (b)", "label zone=b does not satisfy zone notin (b)"},
		{"zone", ""},
		{"spot", "label spot is missing (want spot)"},
		{"!spot", ""},
		{"!zone", "label zone=b is present (want !zone)"},
	}
	for _, tc := range cases {
		t.Run(tc.c, func(t *testing.T) {
			c, err := ParseConstraint(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.MatchLabels(labels); got != tc.why {
				t.Fatalf("got %q, want %q", got, tc.why)
			}
		})
	}
}

func TestMatchGPUModel(t *testing.T) {
	cases := []struct {
		c, model string
		want     bool
	}{
		{"gpu.model=H100", "NVIDIA H100 80GB HBM3", true},
		{"gpu.model=h100", "NVIDIA H100 80GB HBM3", true},
		{"gpu.model=A100", "NVIDIA A100-SXM4-80GB", true},
		{"gpu.model=L40", "NVIDIA L40S", false},
		{"gpu.model=L40S", "NVIDIA L40S", true},
		{"gpu.model=NVIDIA", "NVIDIA L40S", false}, // a vendor is not a model
		{"gpu.model=RTX4090", "NVIDIA GeForce RTX 4090", true},
		{"gpu.model in (rtx-4090)", "NVIDIA GeForce RTX 4090", true},
		{"gpu.model in (H800,H100)", "NVIDIA H800", true},
		{"gpu.model in (H800,H100)", "NVIDIA A100-SXM4-80GB", false},
		{"gpu.model notin (L40S)", "NVIDIA H800", true},
		{"gpu.model!=L40S", "NVIDIA L40S", false},
	}
	for _, tc := range cases {
		t.Run(tc.c+" "+tc.model, func(t *testing.T) {
			c, err := ParseConstraint(tc.c)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.MatchGPUModel(tc.model); got != tc.want {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
