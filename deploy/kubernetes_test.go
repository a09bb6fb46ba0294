package deploy_test

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

func TestKubernetesBase(t *testing.T) {
	flags := serveFlags(t)
	sts := "statefulset.yaml"
	cases := []checkCase{
		{name: "as shipped"},
		{name: "kustomization names a missing file", edits: []edit{{"kustomization.yaml", "- poddisruptionbudget.yaml", "- pdb.yaml"}}, want: "kustomize build"},
		{name: "misspelt field", edits: []edit{{sts, "readinessProbe:", "readinesProbe:"}}, want: `unknown field "readinesProbe"`},
		{name: "pods started in order", edits: []edit{{sts, "podManagementPolicy: Parallel", "podManagementPolicy: OrderedReady"}},
			want: "podManagementPolicy OrderedReady"},
		{name: "readiness on liveness", edits: []edit{{sts, "path: /readyz", "path: /healthz"}}, want: "readiness probe GET /healthz"},
		{name: "liveness on another port", edits: []edit{{sts, "path: /healthz\n              port: http", "path: /healthz\n              port: 9090"}},
			want: "liveness probe GET /healthz on 9090"},
		{name: "token from an environment value", edits: []edit{{sts,
			"- name: SOVRA_ADMIN_TOKEN_FILE\n              value: /etc/sovra/secrets/admin-token",
			"- name: SOVRA_ADMIN_TOKEN\n              valueFrom:\n                secretKeyRef: {name: sovra-tokens, key: admin-token}"}},
			want: "SOVRA_ADMIN_TOKEN comes from a Secret"},
		{name: "token file not mounted", edits: []edit{{sts, "value: /etc/sovra/secrets/cluster-token", "value: /etc/sovra/cluster-token"}},
			want: "SOVRA_CLUSTER_TOKEN_FILE=/etc/sovra/cluster-token is no key of a mounted Secret"},
		{name: "join names a pod that is not there", edits: []edit{{sts, "sovra-2.sovra-peers:8080", "sovra-3.sovra-peers:8080"}},
			want: "--join [sovra-0.sovra-peers:8080 sovra-1.sovra-peers:8080 sovra-3.sovra-peers:8080], want"},
		{name: "advertised name outside the headless service", edits: []edit{{sts, "--advertise-addr=$(POD_NAME).sovra-peers:8080", "--advertise-addr=$(POD_NAME):8080"}},
			want: "--advertise-addr $(POD_NAME):8080, want $(POD_NAME).sovra-peers:8080"},
		{name: "more replicas than expected", edits: []edit{{sts, "replicas: 3", "replicas: 5"}}, want: "--bootstrap-expect 3 but 5 replicas"},
		{name: "disruption budget loses quorum", edits: []edit{{"poddisruptionbudget.yaml", "maxUnavailable: 1", "maxUnavailable: 2"}},
			want: "maxUnavailable 2 of 3 voters"},
		{name: "two pods on one host", edits: []edit{{sts, "topologyKey: kubernetes.io/hostname", "topologyKey: topology.kubernetes.io/zone"}},
			want: "no required anti-affinity per host"},
		{name: "no GPU", edits: []edit{{sts, "nvidia.com/gpu: 1", "nvidia.com/gpu: 0"}}, want: "ollama asks for no nvidia.com/gpu"},
		{name: "peers not listed before ready", edits: []edit{{"services.yaml", "publishNotReadyAddresses: true", "publishNotReadyAddresses: false"}},
			want: "publishNotReadyAddresses"},
		{name: "raft address not the pod's", edits: []edit{{sts, "--raft-addr=$(POD_IP):8300", "--raft-addr=0.0.0.0:8300"}},
			want: "--raft-addr 0.0.0.0:8300"},
		{name: "Ollama reachable from other pods", edits: []edit{{sts, "value: 127.0.0.1:11434", "value: 0.0.0.0:11434"}},
			want: "OLLAMA_HOST=0.0.0.0:11434"},
		{name: "setting that is no flag", edits: []edit{{sts, "- name: SOVRA_SLOTS", "- name: SOVRA_SLOT"}}, want: "SOVRA_SLOT names no flag"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, "kubernetes", tc.edits...)
			objs, err := buildKustomization(dir)
			if err == nil {
				err = objs.check(flags)
			}
			tc.expect(t, err)
		})
	}
}

// TestKubernetesSecretExample: the example Secret is what the pods mount.
func TestKubernetesSecretExample(t *testing.T) {
	objs, err := buildKustomization("kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join("kubernetes", "secret.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var sec corev1.Secret
	if err := yaml.UnmarshalStrict(b, &sec); err != nil {
		t.Fatal(err)
	}
	for _, v := range objs.sts.Spec.Template.Spec.Volumes {
		if v.Secret == nil {
			continue
		}
		if v.Secret.SecretName != sec.Name {
			t.Errorf("the pods mount Secret %s, the example is %s", v.Secret.SecretName, sec.Name)
		}
		for _, item := range v.Secret.Items {
			if _, ok := sec.StringData[item.Key]; !ok {
				t.Errorf("the pods mount key %s, which the example lacks", item.Key)
			}
		}
	}
}

// objects are what the kustomization renders, as the API's types.
type objects struct {
	sts              appsv1.StatefulSet
	peers, clientSvc corev1.Service
	pdb              policyv1.PodDisruptionBudget
}

// buildKustomization builds dir with kustomize's Go API (as kubectl
// apply -k does) and decodes each object strictly: an unknown field fails.
func buildKustomization(dir string) (*objects, error) {
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build: %w", err)
	}
	var o objects
	var stsN, svcN, pdbN int
	for _, r := range rm.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		var svc corev1.Service
		switch r.GetKind() {
		case "StatefulSet":
			stsN++
			err = yaml.UnmarshalStrict(b, &o.sts)
		case "Service":
			svcN++
			if err = yaml.UnmarshalStrict(b, &svc); svc.Spec.ClusterIP == corev1.ClusterIPNone {
				o.peers = svc
			} else {
				o.clientSvc = svc
			}
		case "PodDisruptionBudget":
			pdbN++
			err = yaml.UnmarshalStrict(b, &o.pdb)
		default:
			err = fmt.Errorf("unexpected %s %s", r.GetKind(), r.GetName())
		}
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", r.GetKind(), r.GetName(), err)
		}
	}
	if stsN != 1 || svcN != 2 || pdbN != 1 || o.peers.Name == "" || o.clientSvc.Name == "" {
		return nil, fmt.Errorf("%d StatefulSets, %d Services (headless %q, client %q), %d PodDisruptionBudgets: want 1, 2 (one headless), 1",
			stsN, svcN, o.peers.Name, o.clientSvc.Name, pdbN)
	}
	return &o, nil
}

func (o *objects) check(flags map[string]bool) error {
	sovra, ollama := o.container("sovra"), o.container("ollama")
	if sovra == nil || ollama == nil {
		return errors.New("the pod lacks a sovra or an ollama container")
	}
	return errors.Join(o.checkSelection(), o.checkPlacement(), o.checkProbes(sovra), o.checkStorage(sovra, ollama),
		o.checkSecrets(), o.checkCluster(flags, sovra), o.checkOllama(sovra, ollama))
}

func (o *objects) container(name string) *corev1.Container {
	for i, c := range o.sts.Spec.Template.Spec.Containers {
		if c.Name == name {
			return &o.sts.Spec.Template.Spec.Containers[i]
		}
	}
	return nil
}

// checkSelection: the services and the budget select the StatefulSet's pods.
func (o *objects) checkSelection() error {
	pods := labels.Set(o.sts.Spec.Template.Labels)
	var errs []error
	for _, svc := range []corev1.Service{o.peers, o.clientSvc} {
		if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(pods) {
			errs = append(errs, fmt.Errorf("Service %s does not select the pods", svc.Name))
		}
	}
	if sel := o.pdb.Spec.Selector; sel == nil || !labels.SelectorFromSet(sel.MatchLabels).Matches(pods) {
		errs = append(errs, errors.New("the PodDisruptionBudget does not select the pods"))
	}
	if o.sts.Spec.ServiceName != o.peers.Name {
		errs = append(errs, fmt.Errorf("serviceName %s is not the headless Service %s: the pods get no DNS names", o.sts.Spec.ServiceName, o.peers.Name))
	}
	if !o.peers.Spec.PublishNotReadyAddresses {
		errs = append(errs, errors.New("the headless Service must set publishNotReadyAddresses: the nodes find each other before they are ready"))
	}
	if p := o.sts.Spec.PodManagementPolicy; p != appsv1.ParallelPodManagement {
		errs = append(errs, fmt.Errorf("podManagementPolicy %s: pod 1 would wait for pod 0 to be ready, which needs the cluster formed: want Parallel", p))
	}
	return errors.Join(errs...)
}

// checkPlacement: GPU nodes only, one pod per host, and a disruption budget
// that keeps a majority of the raft voters.
func (o *objects) checkPlacement() error {
	spec := o.sts.Spec.Template.Spec
	var errs []error
	if !slices.ContainsFunc(keys(spec.NodeSelector), func(k string) bool { return strings.HasPrefix(k, "nvidia.com/gpu") }) {
		errs = append(errs, fmt.Errorf("nodeSelector %v selects no GPU nodes", spec.NodeSelector))
	}
	if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool { return t.Key == "nvidia.com/gpu" }) {
		errs = append(errs, errors.New("no toleration of the nvidia.com/gpu taint"))
	}
	perHost := false
	if a := spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		for _, term := range a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			if term.TopologyKey == "kubernetes.io/hostname" && term.LabelSelector != nil &&
				labels.SelectorFromSet(term.LabelSelector.MatchLabels).Matches(labels.Set(o.sts.Spec.Template.Labels)) {
				perHost = true
			}
		}
	}
	if !perHost {
		errs = append(errs, errors.New("no required anti-affinity per host (kubernetes.io/hostname) among the pods"))
	}
	replicas := int(ptrOr(o.sts.Spec.Replicas, 1))
	voters := min(replicas, 3)
	if mu := o.pdb.Spec.MaxUnavailable; mu == nil || mu.Type != intstr.Int || mu.IntValue() < 1 || voters-mu.IntValue() < voters/2+1 {
		errs = append(errs, fmt.Errorf("PodDisruptionBudget maxUnavailable %v of %d voters: a drain may take the majority", mu, voters))
	}
	return errors.Join(errs...)
}

// checkProbes: ready on /readyz, alive on /healthz, both on the API port.
func (o *objects) checkProbes(c *corev1.Container) error {
	var errs []error
	for _, p := range []struct {
		kind, path string
		probe      *corev1.Probe
	}{{"readiness", "/readyz", c.ReadinessProbe}, {"liveness", "/healthz", c.LivenessProbe}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			errs = append(errs, fmt.Errorf("sovra has no HTTP %s probe", p.kind))
			continue
		}
		get := p.probe.HTTPGet
		if get.Path != p.path || port(c, get.Port) != 8080 {
			errs = append(errs, fmt.Errorf("sovra's %s probe GET %s on %s: want %s on the API port 8080", p.kind, get.Path, get.Port.String(), p.path))
		}
	}
	return errors.Join(errs...)
}

// port resolves a named or numbered container port.
func port(c *corev1.Container, p intstr.IntOrString) int {
	if p.Type == intstr.Int {
		return p.IntValue()
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort)
		}
	}
	return 0
}

// checkStorage: sovra's data and Ollama's models on claims of their own.
func (o *objects) checkStorage(sovra, ollama *corev1.Container) error {
	claims := map[string]bool{}
	for _, pvc := range o.sts.Spec.VolumeClaimTemplates {
		claims[pvc.Name] = !pvc.Spec.Resources.Requests.Storage().IsZero()
	}
	var errs []error
	for _, m := range []struct {
		c    *corev1.Container
		path string
	}{{sovra, env(sovra, "SOVRA_DATA_DIR")}, {ollama, "/root/.ollama"}} {
		if !slices.ContainsFunc(m.c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.MountPath == m.path && claims[vm.Name] }) {
			errs = append(errs, fmt.Errorf("%s keeps %q on no volume claim with a size", m.c.Name, m.path))
		}
	}
	return errors.Join(errs...)
}

// checkSecrets: secrets reach the containers as files of a mounted Secret,
// never as environment values, and the token file settings name them.
func (o *objects) checkSecrets() error {
	spec := o.sts.Spec.Template.Spec
	var errs []error
	files := map[string]bool{}
	for _, c := range spec.Containers {
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				errs = append(errs, fmt.Errorf("%s: %s comes from a Secret as an environment value: mount it as a file", c.Name, e.Name))
			}
		}
		for _, ef := range c.EnvFrom {
			if ef.SecretRef != nil {
				errs = append(errs, fmt.Errorf("%s: envFrom Secret %s: mount it as files", c.Name, ef.SecretRef.Name))
			}
		}
		for _, vm := range c.VolumeMounts {
			for _, v := range spec.Volumes {
				if v.Name != vm.Name || v.Secret == nil {
					continue
				}
				if !vm.ReadOnly {
					errs = append(errs, fmt.Errorf("%s mounts Secret %s writable", c.Name, v.Secret.SecretName))
				}
				for _, item := range v.Secret.Items {
					files[c.Name+":"+path.Join(vm.MountPath, item.Path)] = true
				}
			}
		}
	}
	sovra := o.container("sovra")
	for _, name := range []string{"SOVRA_ADMIN_TOKEN_FILE", "SOVRA_CLUSTER_TOKEN_FILE"} {
		if p := env(sovra, name); !files["sovra:"+p] {
			errs = append(errs, fmt.Errorf("sovra: %s=%s is no key of a mounted Secret", name, p))
		}
	}
	return errors.Join(errs...)
}

// checkCluster: the flags that form the cluster agree with the
// StatefulSet and its headless Service. Pod i is <sts>-i, reachable as
// <sts>-i.<service>; every node expects all replicas and joins them all,
// advertising its own such name; raft binds the pod's address.
func (o *objects) checkCluster(flags map[string]bool, c *corev1.Container) error {
	errs := []error{checkSettings(flags, "sovra", c.Args, envNames(c))}
	set := settings(c)
	replicas := int(ptrOr(o.sts.Spec.Replicas, 1))
	httpPort, raftPort := servicePort(o.peers, "http"), servicePort(o.peers, "raft")
	if httpPort != 8080 || raftPort != port(c, intstr.FromString("raft")) {
		errs = append(errs, fmt.Errorf("headless Service ports http %d, raft %d: want the container's", httpPort, raftPort))
	}
	if n, _ := strconv.Atoi(set["bootstrap-expect"]); n != replicas {
		errs = append(errs, fmt.Errorf("--bootstrap-expect %s but %d replicas", set["bootstrap-expect"], replicas))
	}
	var want []string
	for i := range replicas {
		want = append(want, fmt.Sprintf("%s-%d.%s:%d", o.sts.Name, i, o.peers.Name, httpPort))
	}
	if join := strings.Split(set["join"], ","); !slices.Equal(join, want) {
		errs = append(errs, fmt.Errorf("--join %v, want %v", join, want))
	}
	if want := fmt.Sprintf("$(POD_NAME).%s:%d", o.peers.Name, httpPort); set["advertise-addr"] != want {
		errs = append(errs, fmt.Errorf("--advertise-addr %s, want %s", set["advertise-addr"], want))
	}
	if set["node-id"] != "$(POD_NAME)" || fieldRef(c, "POD_NAME") != "metadata.name" {
		errs = append(errs, fmt.Errorf("--node-id %s: want $(POD_NAME), the pod's name", set["node-id"]))
	}
	if want := fmt.Sprintf("$(POD_IP):%d", raftPort); set["raft-addr"] != want || fieldRef(c, "POD_IP") != "status.podIP" {
		errs = append(errs, fmt.Errorf("--raft-addr %s, want %s with POD_IP the pod's address: raft binds it", set["raft-addr"], want))
	}
	return errors.Join(errs...)
}

// checkOllama: Ollama gets the GPU, listens on the pod's loopback only
// (sovra is the way in), and runs as many generations as sovra's slots.
func (o *objects) checkOllama(sovra, ollama *corev1.Container) error {
	var errs []error
	if gpu := ollama.Resources.Limits["nvidia.com/gpu"]; gpu.Value() < 1 {
		errs = append(errs, errors.New("ollama asks for no nvidia.com/gpu"))
	}
	if h := env(ollama, "OLLAMA_HOST"); !strings.HasPrefix(h, "127.0.0.1:") || settings(sovra)["ollama"] != "http://"+h {
		errs = append(errs, fmt.Errorf("OLLAMA_HOST=%s and --ollama %s: want Ollama on the pod's loopback, and sovra calling it there", h, settings(sovra)["ollama"]))
	}
	if s, p := env(sovra, "SOVRA_SLOTS"), env(ollama, "OLLAMA_NUM_PARALLEL"); s != p {
		errs = append(errs, fmt.Errorf("SOVRA_SLOTS=%s but OLLAMA_NUM_PARALLEL=%s", s, p))
	}
	if sc := sovra.SecurityContext; sc == nil || !ptrOr(sc.RunAsNonRoot, false) || !ptrOr(sc.ReadOnlyRootFilesystem, false) {
		errs = append(errs, errors.New("sovra must run as non-root on a read-only root file system"))
	}
	return errors.Join(errs...)
}

func servicePort(svc corev1.Service, name string) int {
	for _, p := range svc.Spec.Ports {
		if p.Name == name {
			return int(p.Port)
		}
	}
	return 0
}

// settings are a container's --flag=value arguments and SOVRA_ values.
func settings(c *corev1.Container) map[string]string {
	out := map[string]string{}
	for _, e := range c.Env {
		if name, ok := strings.CutPrefix(e.Name, "SOVRA_"); ok {
			out[strings.ReplaceAll(strings.ToLower(name), "_", "-")] = e.Value
		}
	}
	for _, a := range c.Args {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			k, v, _ := strings.Cut(name, "=")
			out[k] = v
		}
	}
	return out
}

func env(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func envNames(c *corev1.Container) []string {
	var out []string
	for _, e := range c.Env {
		out = append(out, e.Name)
	}
	return out
}

func fieldRef(c *corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			return e.ValueFrom.FieldRef.FieldPath
		}
	}
	return ""
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}
