package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/sovra/sovra/node"
	"github.com/sovra/sovra/scheduler"
)

// settings are the node settings shared by `serve` and `dev`. Each can be
// given as a flag, as SOVRA_<FLAG> in the environment (dashes become
// underscores), or as a key of the YAML file named by --config, in that
// order of precedence.
type settings struct {
	node      node.Config
	config    string
	logFormat string
	logLevel  string
	debugAddr string
	// adminTokenFile and clusterTokenFile name files holding the secrets.
	adminTokenFile   string
	clusterTokenFile string
	// warnings are logged once the logger exists.
	warnings []string
	// prepare completes the configuration before it is checked (dev fills
	// in what a throwaway node may generate).
	prepare func(*node.Config)
}

// secretFlags are the flags whose values are secrets: never echoed in
// errors, scrubbed from /debug/pprof/cmdline, and each has a -file twin.
var secretFlags = map[string]string{
	"admin-token":   "SOVRA_ADMIN_TOKEN",
	"cluster-token": "SOVRA_CLUSTER_TOKEN",
}

func (s *settings) register(fs *pflag.FlagSet, def node.Config) {
	s.node = def
	fs.StringVar(&s.config, "config", "", "YAML file with settings (keys are flag names)")
	fs.StringVar(&s.node.NodeID, "node-id", def.NodeID, "unique id of this node (default: the host name)")
	fs.StringVar(&s.node.DataDir, "data-dir", def.DataDir, "directory for this node's state")
	fs.StringVar(&s.node.HTTPAddr, "http-addr", def.HTTPAddr, "host:port of the HTTP API")
	fs.StringVar(&s.node.OllamaURL, "ollama", def.OllamaURL, "URL of the local Ollama")
	fs.StringVar(&s.node.OllamaModels, "ollama-models", def.OllamaModels, "the local Ollama's models directory, whose models peers may copy (default: $OLLAMA_MODELS, else ~/.ollama/models)")
	fs.BoolVar(&s.node.ModelUpstream, "model-upstream", def.ModelUpstream, "let Ollama pull a model from its own registry when no peer holds it (false in an air-gapped site)")
	fs.Int64Var(&s.node.ModelCopyRate, "model-copy-rate", def.ModelCopyRate, "bytes per second one copy of a model from a peer may use (0: no limit)")
	fs.StringVar(&s.node.TLSCertFile, "tls-cert", def.TLSCertFile, "PEM certificate the API serves its clients over TLS (reloaded when the file changes or on SIGHUP)")
	fs.StringVar(&s.node.TLSKeyFile, "tls-key", def.TLSKeyFile, "PEM private key of --tls-cert")
	fs.IntVar(&s.node.MaxBodyBytes, "max-body-bytes", def.MaxBodyBytes, "largest request body accepted, in bytes")
	fs.DurationVar(&s.node.ShutdownGrace, "shutdown-grace", def.ShutdownGrace, "how long in-flight requests may finish after SIGTERM")
	fs.DurationVar(&s.node.ReadTimeout, "read-timeout", def.ReadTimeout, "limit for reading one request")
	fs.DurationVar(&s.node.WriteTimeout, "write-timeout", def.WriteTimeout, "limit for each write of a response (not the whole stream)")
	fs.DurationVar(&s.node.IdleTimeout, "idle-timeout", def.IdleTimeout, "close keep-alive connections idle this long")
	fs.DurationVar(&s.node.WakeWait, "wake-wait", def.WakeWait, "how long a request for an idle deployment waits for it to load before a 503 with Retry-After (0: answer at once)")
	s.registerCredentials(fs, def)
	s.registerCluster(fs, def.Cluster)
	s.registerRouting(fs, def.Routing)
	s.registerLimits(fs, def)
	s.registerAudit(fs, def)
	s.registerEnergy(fs)
	s.registerBackendPolicy(fs, def)
	fs.StringVar(&s.debugAddr, "debug-addr", "", "serve Go's profiler (/debug/pprof) on this host:port; off when empty")
	fs.StringVar(&s.logFormat, "log-format", "console", "log format: json or console")
	fs.StringVar(&s.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// resolve fills the flags not given on the command line from the
// environment, then from the config file, and checks the result.
func (s *settings) resolve(cmd *cobra.Command) error {
	fs := cmd.Flags()
	s.warnSecretArgs(fs)
	file, err := readConfigFile(s.configPath(fs))
	if err != nil {
		return usageError{err}
	}
	var ferr error
	fs.VisitAll(func(f *pflag.Flag) {
		if ferr != nil || f.Changed || f.Name == "config" || f.Name == "help" {
			return
		}
		env := "SOVRA_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				ferr = fmt.Errorf("%s=%q: %w", env, shown(f.Name, v), err)
			}
			return
		}
		if v, ok := file[f.Name]; ok {
			if err := fs.Set(f.Name, v); err != nil {
				ferr = fmt.Errorf("%s: %s: %w", s.config, f.Name, err)
			}
			delete(file, f.Name)
		}
	})
	if ferr != nil {
		return usageError{ferr}
	}
	for k := range file {
		if fs.Lookup(k) == nil {
			return usageError{fmt.Errorf("%s: unknown setting %q", s.config, k)}
		}
	}
	if err := s.readTokenFiles(); err != nil {
		return usageError{err}
	}
	if s.node.NodeID == "" {
		host, _ := os.Hostname()
		s.node.NodeID = host
	}
	if s.prepare != nil {
		s.prepare(&s.node)
	}
	if err := s.node.Validate(); err != nil {
		return usageError{err}
	}
	return nil
}

func (s *settings) configPath(fs *pflag.FlagSet) string {
	if s.config == "" && !fs.Changed("config") {
		s.config = os.Getenv("SOVRA_CONFIG")
	}
	return s.config
}

// readConfigFile reads a flat YAML map of flag names to values.
func readConfigFile(path string) (map[string]string, error) {
	if path == "" {
		return map[string]string{}, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	out := make(map[string]string, len(raw))
	for k, v := range raw {
		switch t := v.(type) {
		case []any:
			parts := make([]string, len(t))
			for i, e := range t {
				parts[i] = fmt.Sprint(e)
			}
			out[k] = strings.Join(parts, ",")
		case map[string]any:
			parts := make([]string, 0, len(t))
			for mk, mv := range t {
				parts = append(parts, mk+"="+fmt.Sprint(mv))
			}
			sort.Strings(parts)
			out[k] = strings.Join(parts, ",")
		case time.Duration:
			out[k] = t.String()
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	return out, nil
}

// nodeCommand builds a command that runs a node with the shared settings:
// run gets the resolved node configuration and the process logger.
func nodeCommand(cmd *cobra.Command, def node.Config, run func(cmd *cobra.Command, cfg node.Config, log *zap.Logger) error,
	prepare ...func(*node.Config)) *cobra.Command {
	var s settings
	if len(prepare) > 0 {
		s.prepare = prepare[0]
	}
	cmd.Args = cobra.NoArgs
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := s.resolve(cmd); err != nil {
			return err
		}
		log, err := newLogger(s.logFormat, s.logLevel)
		if err != nil {
			return err
		}
		defer func() { _ = log.Sync() }()
		for _, w := range s.warnings {
			log.Warn(w)
		}
		raiseHeapFloor(os.Getenv)
		if s.debugAddr != "" {
			_, stop, err := serveDebug(s.debugAddr, log)
			if err != nil {
				return usageError{err}
			}
			defer stop()
		}
		return run(cmd, s.node, log)
	}
	s.register(cmd.Flags(), def)
	return cmd
}

func (s *settings) registerCluster(fs *pflag.FlagSet, def node.ClusterConfig) {
	c := &s.node.Cluster
	fs.StringVar(&c.RaftAddr, "raft-addr", def.RaftAddr, "host:port for raft between nodes (empty: serve alone, outside any cluster)")
	fs.StringVar(&c.AdvertiseAddr, "advertise-addr", def.AdvertiseAddr, "host:port at which peers reach this node's HTTP API (default: --http-addr)")
	fs.BoolVar(&c.Bootstrap, "bootstrap", def.Bootstrap, "start a new cluster with this node")
	fs.IntVar(&c.BootstrapExpect, "bootstrap-expect", def.BootstrapExpect, "form a new cluster once this many fresh nodes (found through --join) know each other")
	fs.StringSliceVar(&c.Join, "join", def.Join, "HTTP API of cluster members to join, as host:port or URL (http://10.0.0.1:8080); retried until one succeeds, warning at most every 30s")
	fs.StringVar(&c.Token, "cluster-token", def.Token, "cluster secret, the same on every node, for peers only (prefer SOVRA_CLUSTER_TOKEN or --cluster-token-file: flags show in ps)")
	fs.StringVar(&s.clusterTokenFile, "cluster-token-file", "", "file holding the cluster secret")
	fs.IntVar(&c.MaxVoters, "max-voters", def.MaxVoters, "raft voters, 3 or 5; further nodes join as non-voters")
	fs.DurationVar(&c.HeartbeatInterval, "heartbeat-interval", def.HeartbeatInterval, "how often this node reports to the leader")
	fs.DurationVar(&c.DownAfter, "down-after", def.DownAfter, "the leader marks a node down after this long without a heartbeat")
	fs.DurationVar(&c.ResyncInterval, "resync-interval", def.ResyncInterval, "how often the node looks at its Ollama to keep its replicas as placed (also soon after a request fails there)")
	fs.BoolVar(&c.LeaveOnShutdown, "leave-on-shutdown", def.LeaveOnShutdown, "leave the cluster when stopped (off: a restart keeps its place)")
	fs.StringVar(&c.CertFile, "cluster-cert", def.CertFile, "PEM certificate of this node from your own CA, for raft and peer calls (default: the cluster makes its own CA)")
	fs.StringVar(&c.KeyFile, "cluster-key", def.KeyFile, "PEM private key of --cluster-cert")
	fs.StringVar(&c.CAFile, "cluster-ca", def.CAFile, "PEM CA that signs every node's --cluster-cert")
	fs.StringToStringVar(&c.Labels, "label", def.Labels, "node labels, e.g. jurisdiction=EU,country=FR")
	fs.StringVar(&c.GPUs, "gpu", def.GPUs, `GPU inventory instead of nvidia-smi discovery, e.g. 8xH800:80GiB or "none"`)
	s.registerScheduling(fs)
	s.registerRaftTuning(fs)
}

// registerScheduling adds the flags of the leader's scheduler; every node
// should be given the same values.
func (s *settings) registerScheduling(fs *pflag.FlagSet) {
	c := &s.node.Cluster.Scheduling
	fs.DurationVar(&c.DownGrace, "down-grace", scheduler.DefaultDownGrace, "a down node keeps its replicas this long before they are placed elsewhere")
	fs.IntVar(&c.Context, "context-length", scheduler.DefaultContext, "context length (num_ctx) the scheduler sizes replicas for")
}

func (s *settings) registerRouting(fs *pflag.FlagSet, def node.RoutingConfig) {
	r := &s.node.Routing
	fs.StringVar(&r.Policy, "routing-policy", def.Policy, "how a replica is chosen: ttf (estimated time to finish, with prefix affinity), round-robin or least-connections")
	fs.IntVar(&r.Slots, "slots", def.Slots, "generations of one model the local Ollama runs at once (its OLLAMA_NUM_PARALLEL)")
	fs.IntVar(&r.MaxQueue, "queue-max", def.MaxQueue, "requests that may wait for a slot, per model; more are answered 429/503 with Retry-After")
	fs.DurationVar(&r.QueueTimeout, "queue-timeout", def.QueueTimeout, "longest wait for a slot before a 503 with Retry-After")
	fs.Float64Var(&r.AffinityFactor, "affinity-factor", def.AffinityFactor, "prefix affinity: below 1 off (what replicas' caches hold is ignored); any other value on, a follow-up turn staying on the replica holding its prefix while the prefill that saves outweighs the extra wait there")
	fs.DurationVar(&r.LoadInterval, "load-interval", def.LoadInterval, "how often a node looks for a change in its own load to push to its peers (paced down to one frame a second at 200 nodes)")
}
