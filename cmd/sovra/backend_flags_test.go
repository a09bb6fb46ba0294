package main

import (
	"testing"
)

func TestServeUndeployedFlag(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  string
		want bool
	}{
		{name: "off by default in serve"},
		{name: "the flag", args: []string{"--serve-undeployed"}, want: true},
		{name: "the environment", env: "true", want: true},
		{name: "the flag beats the environment", args: []string{"--serve-undeployed=false"}, env: "true"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("SOVRA_SERVE_UNDEPLOYED", tc.env)
			}
			s, err := parseServe(t, append([]string{"--node-id", "n"}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if s.node.ServeUndeployed != tc.want {
				t.Fatalf("ServeUndeployed %v, want %v", s.node.ServeUndeployed, tc.want)
			}
		})
	}
}

func TestDevServesUndeployedModels(t *testing.T) {
	f := newDev().Flags().Lookup("serve-undeployed")
	if f == nil || f.DefValue != "true" {
		t.Fatalf("dev's --serve-undeployed: %+v, want on by default", f)
	}
}
