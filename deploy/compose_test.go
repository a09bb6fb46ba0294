package deploy_test

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

func TestComposeFile(t *testing.T) {
	compose := tool(t, "docker-compose", "docker-compose")
	flags := serveFlags(t)
	cases := []checkCase{
		{name: "as shipped"},
		{name: "misspelt key", edits: []edit{{"compose.yaml", "    retries: 3\n    start_period: 60s", "    retrys: 3\n    start_period: 60s"}},
			want: "'retrys' does not match"},
		{name: "unknown depends_on condition", edits: []edit{{"compose.yaml", "ollama-2: {condition: service_healthy}", "ollama-2: {condition: healthy}"}},
			want: "condition contains \"healthy\""},
		{name: "secret given as a value", edits: []edit{{"compose.yaml", "SOVRA_ADMIN_TOKEN_FILE: /run/secrets/admin-token", "SOVRA_ADMIN_TOKEN: 0123456789abcdef"}},
			want: "SOVRA_ADMIN_TOKEN gives a secret in the environment"},
		{name: "token file that is no secret", edits: []edit{{"compose.yaml", "/run/secrets/cluster-token", "/run/secrets/cluster-tokens"}},
			want: "SOVRA_CLUSTER_TOKEN_FILE=/run/secrets/cluster-tokens is not a secret of sovra-1"},
		{name: "health check on liveness", edits: []edit{{"compose.yaml", "8080/readyz", "8080/healthz"}},
			want: "health check"},
		{name: "join misses a node", edits: []edit{{"compose.yaml", "SOVRA_JOIN: sovra-1:8080,sovra-2:8080,sovra-3:8080", "SOVRA_JOIN: sovra-1:8080,sovra-2:8080"}},
			want: "--join [sovra-1:8080 sovra-2:8080], want every node's --advertise-addr"},
		{name: "raft address not the container's", edits: []edit{{"compose.yaml", `--raft-addr, "172.30.0.12:8300"`, `--raft-addr, "0.0.0.0:8300"`}},
			want: "sovra-2: --raft-addr 0.0.0.0:8300"},
		{name: "two Ollamas on one GPU", edits: []edit{{"compose.yaml", `device_ids: ["2"]`, `device_ids: ["1"]`}},
			want: "GPU 1 is reserved twice"},
		{name: "Ollama without a GPU", edits: []edit{{"compose.yaml", `{driver: nvidia, device_ids: ["0"], capabilities: [gpu]}`, `{driver: nvidia, device_ids: ["0"], capabilities: [utility]}`}},
			want: "ollama-1 reserves no NVIDIA GPU"},
		{name: "slots differ from Ollama's", edits: []edit{{"compose.yaml", `OLLAMA_NUM_PARALLEL: "4"`, `OLLAMA_NUM_PARALLEL: "2"`}},
			want: "--slots 4 but ollama-1 has OLLAMA_NUM_PARALLEL=2"},
		{name: "data not on a volume", edits: []edit{{"compose.yaml", "volumes: [sovra-3-data:/var/lib/sovra]", "volumes: [sovra-3-data:/data]"}},
			want: "sovra-3 keeps no named volume at /var/lib/sovra"},
		{name: "Ollama published", edits: []edit{{"compose.yaml", "volumes: [ollama-1-models:/root/.ollama]", "volumes: [ollama-1-models:/root/.ollama]\n    ports: [\"11434:11434\"]"}},
			want: "ollama-1 publishes ports"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // docker-compose takes half a second to start
			dir := copyDir(t, "compose", tc.edits...)
			tc.expect(t, checkCompose(compose, flags, filepath.Join(dir, "compose.yaml")))
		})
	}
}

// composeFile is what the checks read of `docker-compose config`: the file
// as Compose understands it, anchors merged and defaults filled in.
type composeFile struct {
	Services map[string]composeService
	Secrets  map[string]struct{ File string }
	Volumes  map[string]any
}

type composeService struct {
	Image       string
	Command     []string
	Environment map[string]string
	Healthcheck struct{ Test []string }
	Secrets     []struct{ Source, Target string }
	Volumes     []string
	Ports       []any
	Networks    map[string]*struct {
		IPv4Address string `yaml:"ipv4_address"`
	}
	Deploy struct {
		Resources struct {
			Reservations struct {
				Devices []struct {
					Driver       string
					DeviceIDs    []string `yaml:"device_ids"`
					Capabilities []string
				}
			}
		}
	}
}

// checkCompose runs Compose's validator on the file (docker-compose config
// validates as config -q does, and prints the result), then checks what
// Compose made of it. A warning fails as an error does.
func checkCompose(compose string, flags map[string]bool, file string) error {
	var stdout, stderr strings.Builder
	cmd := exec.Command(compose, "-f", file, "config")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || strings.TrimSpace(stderr.String()) != "" {
		return fmt.Errorf("docker-compose config (%v):\n%s", err, stderr.String())
	}
	out := stdout.String()
	var cf composeFile
	if err := yaml.Unmarshal([]byte(out), &cf); err != nil {
		return fmt.Errorf("docker-compose config printed no compose file: %v", err)
	}
	var errs []error
	var nodes []string
	for _, name := range keys(cf.Services) {
		if strings.HasPrefix(cf.Services[name].Image, "sovra") {
			nodes = append(nodes, name)
			errs = append(errs, checkComposeNode(flags, cf, name))
		}
	}
	if len(nodes) != 3 {
		errs = append(errs, fmt.Errorf("%d sovra services, want 3", len(nodes)))
	}
	errs = append(errs, checkComposeCluster(cf, nodes), checkComposeGPUs(cf))
	return errors.Join(errs...)
}

// settings are a node's flags and SOVRA_ variables, by flag name.
func (s composeService) settings() map[string]string {
	out := map[string]string{}
	for k, v := range s.Environment {
		if name, ok := strings.CutPrefix(k, "SOVRA_"); ok {
			out[strings.ReplaceAll(strings.ToLower(name), "_", "-")] = v
		}
	}
	for i, a := range s.Command {
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			continue
		}
		if n, v, ok := strings.Cut(name, "="); ok {
			out[n] = v
		} else if i+1 < len(s.Command) {
			out[name] = s.Command[i+1]
		}
	}
	return out
}

func checkComposeNode(flags map[string]bool, cf composeFile, name string) error {
	s := cf.Services[name]
	set := s.settings()
	errs := []error{checkSettings(flags, name, s.Command, keys(s.Environment))}
	if len(s.Command) == 0 || s.Command[0] != "serve" {
		errs = append(errs, fmt.Errorf("%s: command %v does not start with serve", name, s.Command))
	}
	hc := s.Healthcheck.Test
	if len(hc) < 3 || hc[0] != "CMD" || hc[2] != "healthcheck" || !strings.HasSuffix(hc[len(hc)-1], "/readyz") {
		errs = append(errs, fmt.Errorf("%s: health check %v: want [CMD <sovra> healthcheck ... /readyz] (the image has no shell)", name, hc))
	}
	mounted := map[string]bool{}
	for _, sec := range s.Secrets {
		if _, ok := cf.Secrets[sec.Source]; !ok || cf.Secrets[sec.Source].File == "" {
			errs = append(errs, fmt.Errorf("%s: secret %s is not a file secret", name, sec.Source))
		}
		switch target := sec.Target; {
		case target == "":
			mounted["/run/secrets/"+sec.Source] = true
		case strings.HasPrefix(target, "/"):
			mounted[target] = true
		default:
			mounted["/run/secrets/"+target] = true
		}
	}
	for _, v := range []string{"SOVRA_ADMIN_TOKEN_FILE", "SOVRA_CLUSTER_TOKEN_FILE"} {
		if p := s.Environment[v]; !mounted[p] {
			errs = append(errs, fmt.Errorf("%s: %s=%s is not a secret of %s", name, v, p, name))
		}
	}
	if !slices.ContainsFunc(s.Volumes, func(v string) bool {
		parts := strings.Split(v, ":")
		return len(parts) >= 2 && parts[1] == "/var/lib/sovra" && cf.Volumes[parts[0]] != nil
	}) {
		errs = append(errs, fmt.Errorf("%s keeps no named volume at /var/lib/sovra: %v", name, s.Volumes))
	}
	errs = append(errs, checkComposeOllama(cf, name, set))
	return errors.Join(errs...)
}

// checkComposeOllama: the node's Ollama shares a network with it alone,
// publishes nothing, and runs as many generations at once as the node
// counts slots.
func checkComposeOllama(cf composeFile, name string, set map[string]string) error {
	u, err := url.Parse(set["ollama"])
	if err != nil || u.Hostname() == "" {
		return fmt.Errorf("%s: --ollama %q", name, set["ollama"])
	}
	o, ok := cf.Services[u.Hostname()]
	if !ok {
		return fmt.Errorf("%s: --ollama %s is no service", name, set["ollama"])
	}
	var errs []error
	if len(o.Ports) > 0 {
		errs = append(errs, fmt.Errorf("%s publishes ports: clients must reach Ollama through sovra", u.Hostname()))
	}
	if !slices.ContainsFunc(keys(o.Networks), func(n string) bool { return hasKey(cf.Services[name].Networks, n) }) {
		errs = append(errs, fmt.Errorf("%s and %s share no network", name, u.Hostname()))
	}
	if slots := set["slots"]; slots != o.Environment["OLLAMA_NUM_PARALLEL"] {
		errs = append(errs, fmt.Errorf("%s: --slots %s but %s has OLLAMA_NUM_PARALLEL=%s", name, slots, u.Hostname(), o.Environment["OLLAMA_NUM_PARALLEL"]))
	}
	return errors.Join(errs...)
}

func hasKey[V any](m map[string]V, k string) bool {
	_, ok := m[k]
	return ok
}

// checkComposeCluster: the nodes form one cluster. Each is told to expect
// them all and to join every node's advertised address, and raft binds the
// node's fixed address on a network they share.
func checkComposeCluster(cf composeFile, nodes []string) error {
	var errs []error
	var advertised []string
	for _, name := range nodes {
		advertised = append(advertised, cf.Services[name].settings()["advertise-addr"])
	}
	sort.Strings(advertised)
	for _, name := range nodes {
		s := cf.Services[name]
		set := s.settings()
		if set["bootstrap-expect"] != strconv.Itoa(len(nodes)) {
			errs = append(errs, fmt.Errorf("%s: --bootstrap-expect %s, want %d", name, set["bootstrap-expect"], len(nodes)))
		}
		join := strings.Split(set["join"], ",")
		sort.Strings(join)
		if !slices.Equal(join, advertised) {
			errs = append(errs, fmt.Errorf("%s: --join %v, want every node's --advertise-addr %v", name, join, advertised))
		}
		host, _, err := net.SplitHostPort(set["raft-addr"])
		if err != nil || !slices.ContainsFunc(keys(s.Networks), func(n string) bool { return s.Networks[n] != nil && s.Networks[n].IPv4Address == host }) {
			errs = append(errs, fmt.Errorf("%s: --raft-addr %s is not the node's fixed address (ipv4_address): raft binds it and peers dial it", name, set["raft-addr"]))
		}
	}
	return errors.Join(errs...)
}

// checkComposeGPUs: every Ollama reserves its own NVIDIA GPU.
func checkComposeGPUs(cf composeFile) error {
	var errs []error
	taken := map[string]string{}
	for _, name := range keys(cf.Services) {
		s := cf.Services[name]
		if !strings.HasPrefix(s.Image, "ollama/") {
			continue
		}
		gpu := false
		for _, d := range s.Deploy.Resources.Reservations.Devices {
			if d.Driver != "nvidia" || !slices.Contains(d.Capabilities, "gpu") {
				continue
			}
			gpu = true
			for _, id := range d.DeviceIDs {
				if other, ok := taken[id]; ok {
					errs = append(errs, fmt.Errorf("GPU %s is reserved twice, by %s and %s", id, other, name))
				}
				taken[id] = name
			}
		}
		if !gpu {
			errs = append(errs, fmt.Errorf("%s reserves no NVIDIA GPU (deploy.resources.reservations.devices)", name))
		}
	}
	return errors.Join(errs...)
}
