package node_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/internal/ollamarig"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/pki"
	"github.com/sovra/sovra/internal/testauth"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/internal/tinymodel"
	"github.com/sovra/sovra/node"
	"github.com/sovra/sovra/scheduler"
)

// hangupBound bounds the time from a client's hang-up to the moment the
// backend it was using sees its request cancelled. sovra notices a hang-up
// by a failed write or by looking at the socket every 100ms, so it takes
// milliseconds; the streams of these tests are stalled (or long), and
// nothing else ends a stalled stream (sovra's shortest timeout, the 10s
// retry budget, only runs before the first byte), so a bound of a few
// seconds still proves the hang-up did it, without failing when a loaded
// machine, running real Ollamas under -race, starves the test of CPU.
const hangupBound = 3 * time.Second

// This file holds what the routing tests (routing_test.go over simulated
// Ollamas, routing_e2e_test.go over real ones) share: clusters whose every
// node has its own backend, request shapes of both API families, a reader
// that classifies how an answer ended, and a /metrics reader.

// simNode describes one node of a routing test cluster: its id, labels
// ("k=v,k=v"; a zone=<id> label is added) and its simulated Ollama, whose
// Name is set to the node's id so records tell who served a request.
type simNode struct {
	id     string
	labels string
	sim    ollamasim.Config
}

// simCluster is a cluster of real nodes, each over its own simulated
// Ollama.
type simCluster struct {
	ids   []string
	nodes map[string]*node.Node
	sims  map[string]*ollamasim.Server
}

// startSimCluster starts one simulated Ollama and one node per spec (the
// first bootstraps, the others join it), each with one A100 and a fast
// scheduler, and waits until every node is a ready member with its GPUs
// known. edit adjusts every node's configuration.
func startSimCluster(t *testing.T, specs []simNode, edit ...func(*node.Config)) *simCluster {
	t.Helper()
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	c := &simCluster{sims: map[string]*ollamasim.Server{}}
	byID := map[string]simNode{}
	for _, s := range specs {
		c.ids = append(c.ids, s.id)
		byID[s.id] = s
	}
	c.nodes = startNodes(t, c.ids, func(id string) string { return byID[id].labels }, func(id string) string {
		cfg := byID[id].sim
		cfg.Name = id
		c.sims[id] = ollamasim.StartTest(t, cfg)
		return c.sims[id].URL()
	}, edit...)
	return c
}

// startNodes starts one node per id over the Ollama whose URL backend(id)
// returns once it has started it (the first node bootstraps, the others
// join it), each with one A100 and a zone=<id> label plus labels(id) when
// that is not empty, and waits until every node is a ready member with its
// GPUs known. edit adjusts every node's configuration.
func startNodes(t *testing.T, ids []string, labels, backend func(id string) string, edit ...func(*node.Config)) map[string]*node.Node {
	t.Helper()
	nodes := map[string]*node.Node{}
	var join []string
	for i, id := range ids {
		url := backend(id)
		l := "zone=" + id
		if extra := labels(id); extra != "" {
			l += "," + extra
		}
		edits := append([]func(*node.Config){placed(id, "1xA100:80GiB", l, join...)}, edit...)
		nodes[id] = testnode.Start(t, url, edits...)
		if i == 0 {
			join = []string{nodes[id].Addr()}
		}
	}
	waitView(t, nodes[ids[0]].URL(), allReady(len(ids)))
	waitGPUs(t, nodes[ids[0]].URL(), len(ids))
	labelNodes(t, nodes[ids[0]].URL(), ids...)
	return nodes
}

func (c *simCluster) url(id string) string { return c.nodes[id].URL() }

// startOllamaCluster is startNodes over one real Ollama per id (two
// requests in parallel, each with room for an answer as long as a request
// may ask for: the context replicas are sized for, and a prompt) holding
// the tiny model; labels may be nil.
func startOllamaCluster(ctx context.Context, t *testing.T, ids []string, labels func(id string) string, edit ...func(*node.Config)) (map[string]*ollamarig.Rig, map[string]*node.Node) {
	t.Helper()
	if labels == nil {
		labels = func(string) string { return "" }
	}
	rigs := map[string]*ollamarig.Rig{}
	nodes := startNodes(t, ids, labels, func(id string) string {
		rig := ollamarig.Start(t, ollamarig.Options{NumParallel: 2, ContextLength: scheduler.DefaultContext + 512})
		if err := rig.CreateTinyWith(ctx, "tiny", ollamarig.CreateOptions{Model: tinymodel.Options{ContextLength: 2 * scheduler.DefaultContext}}); err != nil {
			t.Fatal(err)
		}
		rigs[id] = rig
		return rig.URL
	}, edit...)
	return rigs, nodes
}

// deploy creates a deployment through the admin API and waits until every
// node's own (stale) view has its replicas ready on exactly the nodes
// wanted, so that every node routes with the same placements.
func (c *simCluster) deploy(t *testing.T, body string, want ...string) {
	t.Helper()
	create(t, c.url(c.ids[0]), body)
	var d struct{ Name string }
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	want = sorted(want...)
	for _, id := range c.ids {
		waitDep(t, c.url(id), d.Name+"?stale=true", func(v depView) bool {
			return readyOn(len(want))(v) && strings.Join(sorted(nodesOf(v)...), ",") == strings.Join(want, ",")
		})
	}
}

// shape is one way of asking for a chat: the API family, the path and
// whether the answer is streamed.
type shape struct {
	name   string
	path   string
	stream bool
}

// openAI reports whether the shape is an OpenAI one (SSE when streamed).
func (s shape) openAI() bool { return strings.HasPrefix(s.path, "/v1/") }

// body is a chat request of model in the shape's format, with a token
// bound when maxTokens is positive.
func (s shape) body(model, prompt string, maxTokens int) string {
	msgs := `[{"role":"user","content":` + strconv.Quote(prompt) + `}]`
	stream := strconv.FormatBool(s.stream)
	switch {
	case s.openAI() && maxTokens > 0:
		return fmt.Sprintf(`{"model":%q,"messages":%s,"stream":%s,"max_tokens":%d}`, model, msgs, stream, maxTokens)
	case s.openAI():
		return fmt.Sprintf(`{"model":%q,"messages":%s,"stream":%s}`, model, msgs, stream)
	case maxTokens > 0:
		return fmt.Sprintf(`{"model":%q,"messages":%s,"stream":%s,"options":{"num_predict":%d}}`, model, msgs, stream, maxTokens)
	default:
		return fmt.Sprintf(`{"model":%q,"messages":%s,"stream":%s}`, model, msgs, stream)
	}
}

// The chat shapes of both API families.
var (
	openAIChat       = shape{"openai", "/v1/chat/completions", false}
	openAIChatStream = shape{"openai-stream", "/v1/chat/completions", true}
	ollamaChat       = shape{"ollama", "/api/chat", false}
	ollamaChatStream = shape{"ollama-stream", "/api/chat", true}
	chatShapes       = []shape{openAIChat, openAIChatStream, ollamaChat, ollamaChatStream}
)

// answer is what came back for one request, read to its end.
type answer struct {
	status int
	header http.Header
	body   []byte // the whole body of an answer that is not streamed
	// Streamed answers: the data frames before any end marker or error,
	// whether the normal end came ([DONE] for SSE, done:true for NDJSON),
	// and the in-band error event that ended the stream, if one did.
	frames  int
	done    bool
	inBand  string
	readErr error
}

// call is one request, with the management token unless header has an
// Authorization; header adds headers (Authorization, Sovra-Jurisdiction).
type call struct {
	url    string // the node's base URL
	shape  shape
	body   string
	header map[string]string
	// firstFrame, when set, is called after the first streamed frame; it
	// returns false to stop reading (the body is then closed at once).
	firstFrame func() bool
}

// do sends the call and reads the answer to its end. A transport error
// before an answer is returned as the error.
func (c call) do(ctx context.Context) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.url+c.shape.path, strings.NewReader(c.body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := testauth.Client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	if resp.StatusCode != http.StatusOK || !c.shape.stream {
		a.body, a.readErr = io.ReadAll(resp.Body)
		return a, nil
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if c.shape.openAI() {
			data, ok := bytes.CutPrefix(line, []byte("data: "))
			if !ok {
				continue
			}
			line = data
		}
		if len(line) == 0 {
			continue
		}
		if string(line) == "[DONE]" {
			a.done = true
			continue
		}
		var f struct {
			Error json.RawMessage `json:"error"`
			Done  bool            `json:"done"`
		}
		if err := json.Unmarshal(line, &f); err != nil {
			a.readErr = fmt.Errorf("frame %q: %w", line, err)
			return a, nil
		}
		if len(f.Error) > 0 && string(f.Error) != "null" {
			a.inBand = string(f.Error)
			continue
		}
		a.frames++
		if f.Done {
			a.done = true
		}
		if a.frames == 1 && c.firstFrame != nil && !c.firstFrame() {
			return a, nil
		}
	}
	a.readErr = sc.Err()
	return a, nil
}

// complete reports whether the answer is a whole, successful one: 200 and
// a full body, or a stream that ended normally without an error event.
// Otherwise it says what is wrong.
func (a answer) complete(s shape) error {
	switch {
	case a.status != http.StatusOK:
		return fmt.Errorf("HTTP %d: %s", a.status, bytes.TrimSpace(a.body))
	case a.readErr != nil:
		return fmt.Errorf("reading the answer: %w", a.readErr)
	case s.stream && a.inBand != "":
		return fmt.Errorf("stream ended with an error after %d frames: %s", a.frames, a.inBand)
	case s.stream && (!a.done || a.frames == 0):
		return fmt.Errorf("stream of %d frames ended without its end marker", a.frames)
	case s.stream:
		return nil
	}
	var v struct {
		Choices []struct {
			Message struct{ Role string } `json:"message"`
		} `json:"choices"`
		Message struct{ Role string } `json:"message"`
		Done    bool                  `json:"done"`
	}
	if err := json.Unmarshal(a.body, &v); err != nil {
		return fmt.Errorf("body %q: %w", a.body, err)
	}
	if s.openAI() && (len(v.Choices) != 1 || v.Choices[0].Message.Role != "assistant") ||
		!s.openAI() && (!v.Done || v.Message.Role != "assistant") {
		return fmt.Errorf("incomplete answer %s", a.body)
	}
	return nil
}

// cutInBand reports whether the answer is a stream that started and then
// ended with an in-band error event and no normal end marker: the only
// acceptable way to fail once the first byte reached the client.
func (a answer) cutInBand() bool {
	return a.status == http.StatusOK && a.frames > 0 && a.inBand != "" && !a.done
}

// errorCode is the error code of an OpenAI-shaped error answer.
func (a answer) errorCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.body, &e)
	return e.Error.Code
}

// metric sums the samples of a metric on a node's /metrics whose labels
// include every one of labels ("k=v" pairs).
func metric(t *testing.T, url, name string, labels ...string) float64 {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		lbl, val := "", rest
		if rest[0] == '{' {
			end := strings.LastIndexByte(rest, '}')
			lbl, val = rest[1:end], rest[end+1:]
		}
		matches := true
		for _, kv := range labels {
			k, v, _ := strings.Cut(kv, "=")
			if !strings.Contains(","+lbl+",", ","+k+"="+strconv.Quote(v)+",") {
				matches = false
			}
		}
		if !matches {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += f
	}
	return sum
}

// outcome is how one request of a load test ended.
type outcome struct {
	entry   string
	shape   shape
	started time.Time
	took    time.Duration
	answer  answer
	err     error
}

// chatLoad runs workers that send chats of a deployment round robin
// through the nodes and the chat shapes until stopped (with a token
// bound when maxTokens is positive).
type chatLoad struct {
	mu       sync.Mutex
	outcomes []outcome
	done     chan struct{}
	wg       sync.WaitGroup
}

func startChatLoad(ids []string, url func(string) string, dep string, workers, maxTokens int, header map[string]string) *chatLoad {
	l := &chatLoad{done: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := w; ; i += workers {
				select {
				case <-l.done:
					return
				default:
				}
				entry, s := ids[i%len(ids)], chatShapes[(i/len(ids))%len(chatShapes)]
				o := outcome{entry: entry, shape: s, started: time.Now()}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				o.answer, o.err = call{url: url(entry), shape: s, body: s.body(dep, fmt.Sprintf("request %d", i), maxTokens), header: header}.do(ctx)
				o.took = time.Since(o.started)
				cancel()
				l.mu.Lock()
				l.outcomes = append(l.outcomes, o)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// completed counts the answers that came whole, those started after since.
func (l *chatLoad) completed(since time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, o := range l.outcomes {
		if o.err == nil && o.answer.complete(o.shape) == nil && !o.started.Before(since) {
			n++
		}
	}
	return n
}

func (l *chatLoad) waitCompleted(t *testing.T, since time.Time, n int) {
	t.Helper()
	testwait.Until(t, 30*time.Second, func() bool { return l.completed(since) >= n },
		func() string { return fmt.Sprintf("%d answers, want %d", l.completed(since), n) })
}

// stop ends the load and returns every outcome.
func (l *chatLoad) stop() []outcome {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.outcomes)
}

// judgeKill sorts the outcomes of a load during which the Ollama of node
// victim was killed at killed: a request may fail only as a stream that
// the victim was serving and that ended with an in-band error event;
// everything else must have been answered whole, and not by the victim
// if it started after the kill. It returns the failures, the streams cut
// in band and the answers that took more than one attempt.
func judgeKill(outcomes []outcome, victim string, killed time.Time) (failed []string, cut, retried int) {
	for _, o := range outcomes {
		a := o.answer
		if n, _ := strconv.Atoi(a.header.Get("Sovra-Attempts")); n > 1 {
			retried++
		}
		switch {
		case o.err != nil:
			failed = append(failed, fmt.Sprintf("%s via %s: %v", o.shape.name, o.entry, o.err))
		case a.complete(o.shape) == nil:
			if o.started.After(killed) && a.header.Get("Sovra-Node") == victim {
				failed = append(failed, fmt.Sprintf("%s via %s started after the kill was served by the victim", o.shape.name, o.entry))
			}
		case o.shape.stream && a.cutInBand():
			// Allowed only for a stream the victim was serving.
			cut++
			if a.header.Get("Sovra-Node") != victim {
				failed = append(failed, fmt.Sprintf("%s via %s served by %s was cut: %s", o.shape.name, o.entry, a.header.Get("Sovra-Node"), a.inBand))
			}
		default:
			failed = append(failed, fmt.Sprintf("%s via %s: %v", o.shape.name, o.entry, a.complete(o.shape)))
		}
	}
	return failed, cut, retried
}

// peerClients are HTTPS clients of a node's API: "peer" presents the
// cluster certificate of n, "none" no certificate, "stranger" one of
// another CA, "plain" speaks plain HTTP.
func peerClients(t *testing.T, n *node.Node) map[string]*http.Client {
	t.Helper()
	foreign, err := pki.NewCluster("stranger")
	if err != nil {
		t.Fatal(err)
	}
	var strangerKeys pki.Keyring
	strangerKeys.Set(foreign)
	blind := func(cfg *tls.Config) *tls.Config { cfg.VerifyPeerCertificate = nil; return cfg } // cannot check the server's CA
	clients := map[string]*http.Client{
		"peer":     {Transport: &http.Transport{TLSClientConfig: n.Cluster().Keyring().ClientConfig(cluster.ServerName)}},
		"none":     {Transport: &http.Transport{TLSClientConfig: blind((&pki.Keyring{}).ClientConfig(cluster.ServerName))}},
		"stranger": {Transport: &http.Transport{TLSClientConfig: blind(strangerKeys.ClientConfig(cluster.ServerName))}},
		"plain":    http.DefaultClient,
	}
	t.Cleanup(func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	})
	return clients
}
