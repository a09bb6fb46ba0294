// Package ollamarig runs a real Ollama server for tests. It starts the
// binary that scripts/ollama-build.sh caches, on a free loopback port with
// its own models directory and home, waits until the server answers, and
// creates tiny random-weight llama models (see internal/tinymodel) so tests
// can chat, generate and embed against the real thing without downloading
// any weights. CreateToolCaller and CreateThinker create scripted tiny
// models whose fixed answers Ollama returns as a real tool call and as real
// thinking apart from the answer.
//
// Tests call Require (or Start, which calls it) first: when the binary is
// missing the test is skipped, unless SOVRA_REQUIRE_OLLAMA=1 is set, in which
// case it fails, so CI can never silently skip the real-server tests.
package ollamarig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/sovra/sovra/internal/tinymodel"
)

// Version is the Ollama release the rig expects; the build script caches
// the binary under a directory named after it.
const Version = "v0.17.4"

// Environment variables read by the rig.
const (
	// EnvBinary overrides the path of the ollama binary.
	EnvBinary = "SOVRA_OLLAMA_BIN"
	// EnvCacheDir overrides the cache root (default $HOME/.cache/sovra),
	// as in scripts/ollama-build.sh.
	EnvCacheDir = "SOVRA_CACHE_DIR"
	// EnvRequire, when "1", turns a missing binary into a test failure.
	EnvRequire = "SOVRA_REQUIRE_OLLAMA"
	// EnvDumpLogs, when "1", logs the server output even when the test
	// passes.
	EnvDumpLogs = "SOVRA_OLLAMA_LOGS"
)

// Template is the chat template given to tiny models. It renders system,
// user, assistant and tool messages, lists tools and past tool calls, and
// wraps assistant thinking in <think> tags, so Ollama reports the tools and
// thinking capabilities and accepts requests that use them. A model with
// random weights never actually emits a tool call or thinking; the scripted
// models of CreateToolCaller and CreateThinker do. The prompt always ends
// with <|assistant|>, the start marker of scripted models.
var Template = chatTemplate("")

// ThinkerTemplate is Template with one change for CreateThinker's model:
// when the request turns thinking off, the prompt ends with an empty
// <think></think> after <|assistant|>, as the templates of real reasoning
// models do, so the scripted model skips its thinking and only answers.
var ThinkerTemplate = chatTemplate("\n{{- if and .IsThinkSet (not .Think) }}<think></think>{{ end }}")

// chatTemplate is the tiny models' template with afterPrompt placed right
// after the final <|assistant|> marker of the prompt.
func chatTemplate(afterPrompt string) string {
	return strings.ReplaceAll(`{{- if .System }}<|system|>{{ .System }}
{{ end }}
{{- if .Tools }}<|tools|>{{ range .Tools }}{{ json . }}
{{ end }}{{ end }}
{{- if .Messages }}
{{- range .Messages }}
{{- if eq .Role "user" }}<|user|>{{ .Content }}
{{ else if eq .Role "assistant" }}<|assistant|>
{{- if .Thinking }}<think>{{ .Thinking }}</think>{{ end }}
{{- .Content }}
{{- if .ToolCalls }}<tool_call>{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ json .Function.Arguments }}}{{ end }}</tool_call>{{ end }}
{{ else if eq .Role "tool" }}<|tool|>{{ .Content }}
{{ end }}
{{- end }}<|assistant|>AFTER_PROMPT
{{- else }}
{{- if .Prompt }}<|user|>{{ .Prompt }}
{{ end }}<|assistant|>AFTER_PROMPT{{ .Response }}
{{- end }}`, "AFTER_PROMPT", afterPrompt)
}

// What the scripted models of CreateToolCaller and CreateThinker say.
const (
	// ToolCallName is the function the tool caller calls.
	ToolCallName = "get_weather"
	// ToolCallArguments are the arguments of its call, as JSON.
	ToolCallArguments = `{"city": "Paris"}`
	// Thought is the thinker's thinking.
	Thought = "The user greets me."
	// Answer is the thinker's answer after its thinking.
	Answer = "Hello!"
)

// ToolCallScript returns the pieces the tool caller answers every chat
// with: one call of ToolCallName in the <tool_call> form Template renders
// past calls in, which is the form Ollama parses calls from.
func ToolCallScript() []string {
	return []string{"<tool_call>", `{"name": "` + ToolCallName + `", "arguments": ` + ToolCallArguments + `}`, "</tool_call>"}
}

// ThinkScript returns the pieces the thinker answers every chat with:
// Thought in <think> tags, then Answer.
func ThinkScript() []string {
	return []string{"<think>", Thought, "</think>", Answer}
}

// ScriptedParameters returns the parameters stored with scripted models:
// greedy sampling, and a num_predict well above any script's length that
// only bounds the output should a script ever break.
func ScriptedParameters() map[string]any {
	return map[string]any{"temperature": 0, "top_k": 1, "seed": 0, "num_predict": 64}
}

// DefaultNumPredict is the num_predict parameter stored with tiny models.
// Their continuations do not end on their own, so every request without an
// explicit num_predict stops after this many tokens.
const DefaultNumPredict = 16

// Binary returns the path of the ollama binary: $SOVRA_OLLAMA_BIN when set,
// else the path scripts/ollama-build.sh caches it at. It fails, saying how
// to build it, when no executable is there.
func Binary() (string, error) {
	path := os.Getenv(EnvBinary)
	if path == "" {
		root := os.Getenv(EnvCacheDir)
		if root == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", fmt.Errorf("ollamarig: no home directory to find the cache in: %w", err)
			}
			root = filepath.Join(home, ".cache", "sovra")
		}
		path = filepath.Join(root, "ollama", Version, "ollama")
	}
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("ollamarig: ollama %s binary not found at %s (build it with scripts/ollama-build.sh, or set %s): %w", Version, path, EnvBinary, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("ollamarig: %s is not an executable file (rebuild with scripts/ollama-build.sh)", path)
	}
	return path, nil
}

// Require skips the test when the ollama binary is missing, or fails it
// when SOVRA_REQUIRE_OLLAMA=1.
func Require(t testing.TB) {
	t.Helper()
	if _, err := Binary(); err != nil {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%v (%s=1 forbids skipping)", err, EnvRequire)
		}
		t.Skipf("skipping real Ollama test: %v", err)
	}
}

// Options configure the server. Zero fields take the defaults noted.
type Options struct {
	// NumParallel sets OLLAMA_NUM_PARALLEL (default: Ollama's own, 1).
	NumParallel int
	// MaxLoadedModels sets OLLAMA_MAX_LOADED_MODELS (default: Ollama's own).
	MaxLoadedModels int
	// MaxQueue sets OLLAMA_MAX_QUEUE (default: Ollama's own).
	MaxQueue int
	// KeepAlive sets OLLAMA_KEEP_ALIVE (default "1m").
	KeepAlive string
	// ContextLength sets OLLAMA_CONTEXT_LENGTH (default 2048).
	ContextLength int
	// Debug sets OLLAMA_DEBUG=1 for verbose server logs.
	Debug bool
	// Env holds extra KEY=VALUE pairs for the server; they win over the
	// rig's own settings.
	Env []string
	// StartTimeout bounds how long the server may take to answer (default
	// 60s).
	StartTimeout time.Duration
}

// Rig is a running Ollama server.
type Rig struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:40123.
	URL string
	// Host is the host:port the server listens on.
	Host string
	// ModelsDir is the server's OLLAMA_MODELS directory.
	ModelsDir string

	t       testing.TB
	dir     string
	cmd     *exec.Cmd
	logs    *syncBuffer
	exited  chan struct{}
	waitErr error

	stopOnce sync.Once
	client   *api.Client
}

// Start starts `ollama serve` and waits until it answers /api/version. The
// server is stopped, and its output logged if the test failed, when the
// test ends.
func Start(t testing.TB, opts Options) *Rig {
	t.Helper()
	Require(t)
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	if opts.KeepAlive == "" {
		opts.KeepAlive = "1m"
	}
	if opts.ContextLength == 0 {
		opts.ContextLength = 2048
	}
	if opts.StartTimeout == 0 {
		opts.StartTimeout = 60 * time.Second
	}

	// A port picked by the kernel can be taken again before the server
	// binds it; try a few times.
	var lastErr error
	for range 3 {
		r, err := start(t, bin, opts)
		if err == nil {
			return r
		}
		lastErr = err
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	t.Fatalf("ollamarig: %v", lastErr)
	return nil
}

var errAddrInUse = errors.New("address already in use")

func start(t testing.TB, bin string, opts Options) (*Rig, error) {
	t.Helper()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := t.TempDir()
	r := &Rig{
		Host:      net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		ModelsDir: filepath.Join(dir, "models"),
		t:         t,
		dir:       dir,
		logs:      &syncBuffer{},
		exited:    make(chan struct{}),
	}
	r.URL = "http://" + r.Host
	home := filepath.Join(dir, "home")
	for _, d := range []string{r.ModelsDir, home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}

	env := []string{
		"HOME=" + home,
		"OLLAMA_HOST=" + r.Host,
		"OLLAMA_MODELS=" + r.ModelsDir,
		"OLLAMA_NOPRUNE=1",
		"OLLAMA_NO_CLOUD=1",
		"OLLAMA_KEEP_ALIVE=" + opts.KeepAlive,
		"OLLAMA_CONTEXT_LENGTH=" + strconv.Itoa(opts.ContextLength),
		"OLLAMA_ORIGINS=*",
	}
	if opts.NumParallel > 0 {
		env = append(env, "OLLAMA_NUM_PARALLEL="+strconv.Itoa(opts.NumParallel))
	}
	if opts.MaxLoadedModels > 0 {
		env = append(env, "OLLAMA_MAX_LOADED_MODELS="+strconv.Itoa(opts.MaxLoadedModels))
	}
	if opts.MaxQueue > 0 {
		env = append(env, "OLLAMA_MAX_QUEUE="+strconv.Itoa(opts.MaxQueue))
	}
	if opts.Debug {
		env = append(env, "OLLAMA_DEBUG=1")
	}
	env = append(env, opts.Env...)

	cmd := exec.Command(bin, "serve")
	cmd.Env = mergeEnv(os.Environ(), env)
	cmd.Dir = dir
	cmd.Stdout = r.logs
	cmd.Stderr = r.logs
	// Own process group, so runner subprocesses can be killed with the
	// server if it does not exit in time.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s serve: %w", bin, err)
	}
	r.cmd = cmd
	go func() {
		r.waitErr = cmd.Wait()
		close(r.exited)
	}()
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() || os.Getenv(EnvDumpLogs) == "1" {
			t.Logf("ollama serve output (%s):\n%s", r.URL, r.Logs())
		}
	})

	u, _ := url.Parse(r.URL)
	r.client = api.NewClient(u, &http.Client{})

	if err := r.waitReady(opts.StartTimeout); err != nil {
		r.Stop()
		if strings.Contains(r.Logs(), "address already in use") {
			return nil, fmt.Errorf("%w: %v", errAddrInUse, err)
		}
		return nil, fmt.Errorf("%v\nollama serve output:\n%s", err, r.Logs())
	}
	return r, nil
}

// waitReady polls /api/version until it answers, the process exits or the
// timeout passes.
func (r *Rig) waitReady(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		reqCtx, reqCancel := context.WithTimeout(ctx, time.Second)
		v, err := r.client.Version(reqCtx)
		reqCancel()
		if err == nil {
			r.t.Logf("ollama %s listening on %s", v, r.URL)
			return nil
		}
		select {
		case <-r.exited:
			return fmt.Errorf("ollama serve exited before answering: %v", r.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("ollama serve did not answer /api/version within %v: last error: %v", timeout, err)
		case <-tick.C:
		}
	}
}

// Client returns an Ollama API client for the server.
func (r *Rig) Client() *api.Client { return r.client }

// Logs returns what the server wrote to stdout and stderr so far.
func (r *Rig) Logs() string { return r.logs.String() }

// Stop stops the server: an interrupt first, then, after ten seconds, a kill
// of its whole process group. It is safe to call more than once.
func (r *Rig) Stop() {
	r.stopOnce.Do(func() {
		if r.cmd == nil || r.cmd.Process == nil {
			return
		}
		_ = r.cmd.Process.Signal(os.Interrupt)
		select {
		case <-r.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
			<-r.exited
		}
		// Runners the server started are in its process group; make sure
		// none outlives it.
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	})
}

// Exited reports whether the server process has exited.
func (r *Rig) Exited() bool {
	select {
	case <-r.exited:
		return true
	default:
		return false
	}
}

// CreateOptions describe a tiny model to create.
type CreateOptions struct {
	// Model shapes the GGUF weights; see tinymodel.Options.
	Model tinymodel.Options
	// Template is the chat template (default Template).
	Template string
	// Parameters are stored with the model (default num_predict
	// DefaultNumPredict and seed 0).
	Parameters map[string]any
}

// CreateTiny creates a tiny llama chat model called name (e.g.
// "tiny:latest") with the default weights, Template and parameters.
func (r *Rig) CreateTiny(ctx context.Context, name string) error {
	return r.CreateTinyWith(ctx, name, CreateOptions{})
}

// CreateTinyWith writes a tiny model as described by co, uploads it as a
// blob and creates the model called name from it.
func (r *Rig) CreateTinyWith(ctx context.Context, name string, co CreateOptions) error {
	if co.Template == "" {
		co.Template = Template
	}
	if co.Parameters == nil {
		co.Parameters = map[string]any{"num_predict": DefaultNumPredict, "seed": 0}
	}
	f, err := os.CreateTemp(r.dir, "tiny-*.gguf")
	if err != nil {
		return err
	}
	path := f.Name()
	f.Close()
	defer os.Remove(path)
	digest, _, err := tinymodel.WriteFile(path, co.Model)
	if err != nil {
		return err
	}
	blob, err := os.Open(path)
	if err != nil {
		return err
	}
	defer blob.Close()
	if err := r.client.CreateBlob(ctx, digest, blob); err != nil {
		return fmt.Errorf("ollamarig: upload blob %s: %w", digest, err)
	}
	stream := false
	req := &api.CreateRequest{
		Model:      name,
		Files:      map[string]string{"model.gguf": digest},
		Template:   co.Template,
		Parameters: co.Parameters,
		Stream:     &stream,
	}
	var last api.ProgressResponse
	if err := r.client.Create(ctx, req, func(p api.ProgressResponse) error {
		last = p
		return nil
	}); err != nil {
		return fmt.Errorf("ollamarig: create %s: %w", name, err)
	}
	if last.Status != "success" {
		return fmt.Errorf("ollamarig: create %s ended with status %q", name, last.Status)
	}
	return nil
}

// CreateToolCaller creates a scripted tiny model called name that answers
// every chat, with Template, by calling ToolCallName with
// ToolCallArguments and then stopping. Given tools, Ollama returns that as
// message.tool_calls; without, as the text of ToolCallScript.
func (r *Rig) CreateToolCaller(ctx context.Context, name string) error {
	return r.CreateTinyWith(ctx, name, CreateOptions{
		Model:      tinymodel.Options{Script: ToolCallScript(), Name: "sovra-tiny-tool-caller"},
		Template:   Template,
		Parameters: ScriptedParameters(),
	})
}

// CreateThinker creates a scripted tiny model called name, with
// ThinkerTemplate, that thinks Thought and answers Answer, then stops.
// Ollama reports the thinking capability for it and, with thinking on (the
// default), returns Thought as message.thinking apart from Answer in
// message.content; with thinking off the model answers Answer alone.
func (r *Rig) CreateThinker(ctx context.Context, name string) error {
	return r.CreateTinyWith(ctx, name, CreateOptions{
		Model:      tinymodel.Options{Script: ThinkScript(), Name: "sovra-tiny-thinker"},
		Template:   ThinkerTemplate,
		Parameters: ScriptedParameters(),
	})
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// mergeEnv drops the parent's OLLAMA_* settings and proxy variables, then
// applies set; later entries win.
func mergeEnv(parent, set []string) []string {
	out := make([]string, 0, len(parent)+len(set))
	idx := map[string]int{}
	put := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := idx[k]; ok {
			out[i] = kv
			return
		}
		idx[k] = len(out)
		out = append(out, kv)
	}
	for _, kv := range parent {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "OLLAMA_"), strings.EqualFold(k, "http_proxy"),
			strings.EqualFold(k, "https_proxy"), strings.EqualFold(k, "all_proxy"):
			continue
		}
		put(kv)
	}
	for _, kv := range set {
		put(kv)
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// ModelNames lists the models the server has, sorted, failing t on error.
func (r *Rig) ModelNames(t testing.TB) []string {
	t.Helper()
	list, err := r.client.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(list.Models))
	for _, m := range list.Models {
		names = append(names, m.Name)
	}
	slices.Sort(names)
	return names
}
