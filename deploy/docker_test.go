package deploy_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Docker cannot build here (no daemon, no registry), so the Dockerfile is
// read statically: its instructions as Docker splits them, then what the
// image must be.

func TestDockerfile(t *testing.T) {
	flags := serveFlags(t)
	cases := []checkCase{
		{name: "as shipped"},
		{name: "runs as root", edits: []edit{{"Dockerfile", "USER 65532:65532", "USER root"}}, want: "runs as root"},
		{name: "no user", edits: []edit{{"Dockerfile", "USER 65532:65532\n", ""}}, want: "runs as root"},
		{name: "final image with a toolchain", edits: []edit{{"Dockerfile", "FROM gcr.io/distroless/static-debian12:nonroot", "FROM golang:1.26"}},
			want: "final stage FROM golang:1.26"},
		{name: "dynamic binary", edits: []edit{{"Dockerfile", "CGO_ENABLED=0 go build", "go build"}}, want: "CGO_ENABLED=0"},
		{name: "health check needs a shell", edits: []edit{{"Dockerfile", `CMD ["/usr/local/bin/sovra", "healthcheck", "--addr", "http://127.0.0.1:8080/readyz"]`, "CMD curl -f http://127.0.0.1:8080/readyz"}},
			want: "HEALTHCHECK must run the binary in exec form"},
		{name: "health check on liveness", edits: []edit{{"Dockerfile", "8080/readyz", "8080/healthz"}}, want: "/readyz"},
		{name: "secret baked in", edits: []edit{{"Dockerfile", "SOVRA_LOG_FORMAT=json", "SOVRA_LOG_FORMAT=json SOVRA_CLUSTER_TOKEN=0123456789abcdef"}},
			want: "ENV SOVRA_CLUSTER_TOKEN"},
		{name: "raft port not exposed", edits: []edit{{"Dockerfile", "EXPOSE 8080 8300", "EXPOSE 8080"}}, want: "EXPOSE lacks 8300"},
		{name: "misspelt instruction", edits: []edit{{"Dockerfile", "WORKDIR /src", "WORKDIRS /src"}}, want: "unknown instruction WORKDIRS"},
		{name: "entrypoint not the copied binary", edits: []edit{{"Dockerfile", `ENTRYPOINT ["/usr/local/bin/sovra"]`, `ENTRYPOINT ["/sovra"]`}},
			want: "ENTRYPOINT /sovra is not copied"},
		{name: "setting that is no flag", edits: []edit{{"Dockerfile", "SOVRA_LOG_FORMAT=json", "SOVRA_LOGFORMAT=json"}},
			want: "SOVRA_LOGFORMAT names no flag"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, "docker", tc.edits...)
			b, err := os.ReadFile(filepath.Join(dir, "Dockerfile"))
			if err != nil {
				t.Fatal(err)
			}
			tc.expect(t, checkDockerfile(flags, b))
		})
	}
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
	line      int
}

// stage is a FROM and what follows it.
type stage struct {
	from string
	ins  []instruction
}

var instructions = []string{"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
	"LABEL", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}

// parseDockerfile splits a Dockerfile into stages of instructions as
// Docker reads it: comments and blank lines dropped (also inside a
// continued line), a trailing backslash continues the line.
func parseDockerfile(b []byte) ([]stage, error) {
	var stages []stage
	var cur strings.Builder
	start := 0
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args), line: start}
		switch {
		case !slices.Contains(instructions, in.cmd):
			return fmt.Errorf("line %d: unknown instruction %s", in.line, cmd)
		case in.cmd == "FROM":
			stages = append(stages, stage{from: in.args})
		case len(stages) == 0 && in.cmd != "ARG":
			return fmt.Errorf("line %d: %s before FROM", in.line, in.cmd)
		case len(stages) > 0:
			stages[len(stages)-1].ins = append(stages[len(stages)-1].ins, in)
		}
		return nil
	}
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if body, ok := strings.CutSuffix(trimmed, `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(trimmed)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if cur.Len() > 0 {
		return nil, errors.New("the last line continues into nothing")
	}
	return stages, nil
}

var secretName = regexp.MustCompile(`(?i)token|secret|password|passwd|private_?key`)

// checkDockerfile: a static binary built in a Go stage, a final stage with
// no shell that runs as a non-root user, health checked by the binary, and
// no secret in the image.
func checkDockerfile(flags map[string]bool, b []byte) error {
	stages, err := parseDockerfile(b)
	if err != nil {
		return err
	}
	if len(stages) < 2 {
		return fmt.Errorf("%d stages: want a build stage and a final one", len(stages))
	}
	var errs []error
	build, final := stages[0], stages[len(stages)-1]
	if !strings.HasPrefix(build.from, "golang:") {
		errs = append(errs, fmt.Errorf("build stage FROM %s: want golang:", build.from))
	}
	if !slices.ContainsFunc(build.ins, func(in instruction) bool {
		return in.cmd == "RUN" && strings.Contains(in.args, "CGO_ENABLED=0 go build") && strings.Contains(in.args, "./cmd/sovra")
	}) {
		errs = append(errs, errors.New("no RUN CGO_ENABLED=0 go build ... ./cmd/sovra: the final image has no libc for a dynamic binary"))
	}
	base := strings.Fields(final.from)[0]
	if base != "scratch" && !strings.HasPrefix(base, "gcr.io/distroless/static") {
		errs = append(errs, fmt.Errorf("final stage FROM %s: want scratch or distroless/static (no shell, no package manager)", final.from))
	}
	for _, s := range stages {
		for _, in := range s.ins {
			errs = append(errs, checkInstructionSecrets(in))
		}
	}
	var env []string
	for _, in := range final.ins {
		if in.cmd == "ENV" {
			for _, kv := range strings.Fields(in.args) {
				name, _, _ := strings.Cut(kv, "=")
				env = append(env, name)
			}
		}
	}
	errs = append(errs, checkSettings(flags, "Dockerfile", nil, env))
	return errors.Join(append(errs, checkFinalStage(final))...)
}

func checkFinalStage(final stage) error {
	var errs []error
	last := func(cmd string) (instruction, bool) {
		for _, in := range slices.Backward(final.ins) {
			if in.cmd == cmd {
				return in, true
			}
		}
		return instruction{}, false
	}
	user, _ := last("USER")
	if name, _, _ := strings.Cut(user.args, ":"); name == "" || name == "root" || name == "0" {
		errs = append(errs, fmt.Errorf("final stage runs as root (USER %q)", user.args))
	}
	expose, _ := last("EXPOSE")
	for _, port := range []string{"8080", "8300"} {
		if !slices.Contains(strings.Fields(expose.args), port) {
			errs = append(errs, fmt.Errorf("EXPOSE lacks %s", port))
		}
	}
	var copied []string
	for _, in := range final.ins {
		if in.cmd == "COPY" {
			f := strings.Fields(in.args)
			copied = append(copied, f[len(f)-1])
		}
	}
	entry, _ := last("ENTRYPOINT")
	var argv []string
	if err := json.Unmarshal([]byte(entry.args), &argv); err != nil || len(argv) == 0 {
		errs = append(errs, fmt.Errorf("ENTRYPOINT %q: want the exec form, the image has no shell", entry.args))
	} else if !slices.Contains(copied, argv[0]) {
		errs = append(errs, fmt.Errorf("ENTRYPOINT %s is not copied into the final stage (%v)", argv[0], copied))
	}
	hc, _ := last("HEALTHCHECK")
	_, probe, _ := strings.Cut(hc.args, "CMD ")
	var hcArgv []string
	if json.Unmarshal([]byte(probe), &hcArgv) != nil || len(argv) == 0 || len(hcArgv) < 2 || hcArgv[0] != argv[0] || hcArgv[1] != "healthcheck" {
		errs = append(errs, fmt.Errorf("HEALTHCHECK must run the binary in exec form (%s healthcheck), there is no shell: %q", strings.Join(argv, " "), hc.args))
	} else if !strings.HasSuffix(strings.Join(hcArgv, " "), "/readyz") {
		errs = append(errs, fmt.Errorf("HEALTHCHECK %v: want the node's /readyz", hcArgv))
	}
	return errors.Join(errs...)
}

// checkInstructionSecrets refuses ARG and ENV that carry a secret: they
// stay in the image's history and configuration. Names of files are fine.
func checkInstructionSecrets(in instruction) error {
	if in.cmd != "ARG" && in.cmd != "ENV" {
		return nil
	}
	var errs []error
	for _, kv := range strings.Fields(in.args) {
		name, _, _ := strings.Cut(kv, "=")
		if secretName.MatchString(name) && !strings.HasSuffix(name, "_FILE") {
			errs = append(errs, fmt.Errorf("line %d: %s %s puts a secret into the image", in.line, in.cmd, name))
		}
	}
	return errors.Join(errs...)
}
