package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testcluster"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/internal/testwait"
	"github.com/sovra/sovra/node"
)

// The bad-input table: malformed and hostile requests on every route
// family, each with the exact answer it must get (cases in
// badinput_cases_test.go). After each case the node must still be
// healthy and the cluster's desired state unchanged.

// badBodyLimit is the body limit of the node under test, small so that
// bodies past it are cheap to send.
const badBodyLimit = 256 << 10

// badMaxValues is its bound on the values of a JSON body, low enough
// that a body past it is within badBodyLimit.
const badMaxValues = 50_000

// errFormat is the shape an answer must have.
type errFormat int

const (
	fmtOpenAI    errFormat = iota + 1 // {"error":{"message","type","param","code"}}
	fmtAnthropic                      // {"type":"error","error":{"type","message"}}
	fmtOllama                         // {"error":"..."}
	fmtOK                             // a 2xx answer, body not checked beyond being JSON
)

// want is the answer a bad request must get.
type want struct {
	status int
	format errFormat
	// typ is the OpenAI error type or Anthropic's error.type.
	typ string
	// code and param are the OpenAI error's (empty: null).
	code, param string
	// msg, when set, must be in the message.
	msg string
}

func oai(status int, typ, code, param string) want {
	return want{status: status, format: fmtOpenAI, typ: typ, code: code, param: param}
}

func bad(param string) want { return oai(400, "invalid_request_error", "", param) }

func limited(param string) want { return oai(400, "invalid_request_error", "limit_exceeded", param) }

func ant(status int, typ string) want { return want{status: status, format: fmtAnthropic, typ: typ} }

func oll(status int, msg string) want { return want{status: status, format: fmtOllama, msg: msg} }

func (w want) with(msg string) want { w.msg = msg; return w }

// cred values of badCase.cred beyond a literal Authorization header.
const (
	credAdmin = ""        // the management token (default)
	credNone  = "<none>"  // no Authorization header
	credUser  = "<user>"  // an inference key's bearer token
	credKeyOf = "<x-api>" // the management token as x-api-key only
)

// badCase is one request and the answer it must get.
type badCase struct {
	name   string
	method string // POST when empty and body is set, else GET
	path   string
	body   string
	ctype  string // application/json when empty
	cred   string
	header []string // name, value pairs
	// raw, when set, is sent as is over TCP instead (use {{auth}} for the
	// management token's Authorization header, {{user}} for the key's,
	// {{host}} for the node's address).
	raw string
	// halfClose, with raw, ends the sending side after raw.
	halfClose bool
	want      want
}

// badEnv is what the cases need to know of the cluster.
type badEnv struct {
	url     string
	addr    string
	userKey string // an inference key's secret
	keyID   string // its id
	snap    []byte // a valid snapshot of the cluster
}

func TestBadInput(t *testing.T) {
	c := testcluster.Start(t, []testcluster.Spec{{ID: "a"}}, func(cfg *node.Config) {
		cfg.MaxBodyBytes = badBodyLimit
		cfg.Limits.MaxJSONValues = badMaxValues
	})
	env := setUpBadInput(t, c)
	before := desiredState(t, c)
	cases := badInputCases(env)
	counts := map[string]int{}
	for _, tc := range cases {
		counts[familyName(tc)]++
	}
	t.Logf("%d cases: %v", len(cases), counts)
	if len(cases) < 100 {
		t.Fatalf("only %d cases", len(cases))
	}
	names := map[string]bool{}
	for _, tc := range cases {
		if names[tc.name] {
			t.Fatalf("two cases named %q", tc.name)
		}
		names[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			// Checked even when the answer was wrong.
			defer func() {
				checkHealthy(t, env)
				if after := desiredState(t, c); !reflect.DeepEqual(before, after) {
					t.Errorf("the cluster's desired state changed:\nbefore %+v\nafter  %+v", before, after)
					before = after // the next cases are checked against it
				}
			}()
			status, body := env.send(t, tc)
			for _, secret := range []string{testnode.Token, env.userKey} {
				if bytes.Contains(body, []byte(secret)) {
					t.Errorf("the answer repeats a credential: %s", body)
				}
			}
			checkAnswer(t, tc, status, body)
		})
	}
	checkServes(t, env)
}

// familyName is the route family a case belongs to, for the count.
func familyName(tc badCase) string {
	p := tc.path
	if tc.raw != "" {
		return "raw HTTP"
	}
	switch {
	case strings.HasPrefix(p, "/v1/messages"):
		return "anthropic"
	case strings.HasPrefix(p, "/v1/responses"):
		return "responses"
	case strings.HasPrefix(p, "/v1/"):
		return "openai"
	case strings.HasPrefix(p, "/api/"):
		return "ollama"
	case strings.HasPrefix(p, "/admin/"):
		return "admin"
	}
	return "other"
}

// setUpBadInput gives the cluster a ready deployment and an inference key,
// so that the cases have state to leave alone and a key to use.
func setUpBadInput(t *testing.T, c *testcluster.Cluster) badEnv {
	t.Helper()
	ctx := testCtx(t)
	cl := c.Client("a")
	one := 1
	if _, err := cl.CreateDeployment(ctx, client.DeploymentRequest{Name: "chat", Model: "llama3.2:1b", Replicas: &one}); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 30*time.Second, "deployment chat ready", func() bool {
		d, err := cl.Deployment(ctx, "chat")
		return err == nil && d.ReadyReplicas == 1
	})
	name := "tenant"
	key, err := cl.CreateKey(ctx, client.KeyRequest{Name: &name})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := cl.SaveSnapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return badEnv{url: c.URL("a"), addr: c.Nodes["a"].Addr(), userKey: key.Secret, keyID: key.ID, snap: snap}
}

// stateDigest is the desired state an operator set: what no bad request
// may change. Heartbeats, last uses, usage and the audit log (where
// failed authentications are recorded) may move.
type stateDigest struct {
	Deployments map[string]state.Deployment
	Placements  []string
	Keys        map[string]state.APIKey
	Models      map[string]state.ModelSpec
	Labels      map[string]map[string]string
	Status      map[string]state.NodeStatus
	Quotas      int
	CA          bool
}

func desiredState(t *testing.T, c *testcluster.Cluster) stateDigest {
	t.Helper()
	snap, err := c.Client("a").SaveSnapshot(testCtx(t))
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	s, err := state.Decode(bytes.NewReader(snap))
	if err != nil {
		t.Fatalf("decode snapshot: %v", err)
	}
	d := stateDigest{Deployments: map[string]state.Deployment{}, Keys: map[string]state.APIKey{}, Models: map[string]state.ModelSpec{},
		Labels: map[string]map[string]string{}, Status: map[string]state.NodeStatus{}, Quotas: len(s.Quotas), CA: s.ClusterCA != nil}
	for name, dep := range s.Deployments {
		cp := *dep
		cp.LastUsed = 0
		d.Deployments[name] = cp
	}
	for _, p := range s.Placements {
		d.Placements = append(d.Placements, p.Deployment+"@"+p.Node)
	}
	for id, k := range s.APIKeys {
		cp := *k
		cp.LastUsed = 0
		d.Keys[id] = cp
	}
	for name, m := range s.Models {
		d.Models[name] = *m
	}
	for id, n := range s.Nodes {
		d.Labels[id], d.Status[id] = n.Labels, n.Status
	}
	return d
}

// send makes the case's request and returns the status (0: the
// connection closed without an answer) and body.
func (e badEnv) send(t *testing.T, tc badCase) (int, []byte) {
	t.Helper()
	if tc.raw != "" {
		return e.sendRaw(t, tc.raw, tc.halfClose)
	}
	method := tc.method
	if method == "" {
		method = http.MethodGet
		if tc.body != "" {
			method = http.MethodPost
		}
	}
	req, err := http.NewRequest(method, e.url+tc.path, strings.NewReader(tc.body))
	if err != nil {
		t.Fatal(err)
	}
	ctype := tc.ctype
	if ctype == "" {
		ctype = "application/json"
	}
	req.Header.Set("Content-Type", ctype)
	switch tc.cred {
	case credAdmin:
		req.Header.Set("Authorization", "Bearer "+testnode.Token)
	case credNone:
	case credUser:
		req.Header.Set("Authorization", "Bearer "+e.userKey)
	case credKeyOf:
		req.Header.Set("X-Api-Key", testnode.Token)
	default:
		req.Header.Set("Authorization", tc.cred)
	}
	for i := 0; i+1 < len(tc.header); i += 2 {
		if tc.header[i] == "Host" {
			req.Host = tc.header[i+1]
			continue
		}
		req.Header.Set(tc.header[i], tc.header[i+1])
	}
	if len(tc.body) > badBodyLimit {
		// The node answers a body past its limit before it has read it
		// and closes the connection: net/http may then report its
		// failed write rather than the answer, which a raw read gets.
		var raw bytes.Buffer
		if err := req.Write(&raw); err != nil {
			t.Fatal(err)
		}
		return e.sendRaw(t, raw.String(), false)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", method, tc.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	return resp.StatusCode, body
}

// sendRaw writes a request over a TCP connection of its own and reads the
// answer.
func (e badEnv) sendRaw(t *testing.T, raw string, halfClose bool) (int, []byte) {
	t.Helper()
	raw = strings.NewReplacer("{{auth}}", "Authorization: Bearer "+testnode.Token, "{{user}}", "Authorization: Bearer "+e.userKey,
		"{{host}}", e.addr).Replace(raw)
	conn, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	// The server may answer and close before it has read everything: a
	// failed write is then not an error of the test.
	go func() {
		_, _ = io.WriteString(conn, raw)
		if halfClose {
			_ = conn.(*net.TCPConn).CloseWrite()
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// leaks are texts that tell a client about the server's insides.
var leaks = []string{"Go struct", "Go value", "goroutine", "runtime error", ".go:", "sovra/", "panic", "interface {}", "map[string]",
	"Buffer size", `\r\n`}

// checkAnswer checks status and body against the case's want.
func checkAnswer(t *testing.T, tc badCase, status int, body []byte) {
	t.Helper()
	w := tc.want
	if status != w.status {
		t.Fatalf("status %d, want %d: %.400s", status, w.status, body)
	}
	if len(body) > 2048 && w.format != fmtOK {
		t.Errorf("the answer has %d bytes: it echoes the request? %.200s", len(body), body)
	}
	for _, l := range leaks {
		if w.format != fmtOK && bytes.Contains(body, []byte(l)) {
			t.Errorf("the answer tells of the server's insides (%q): %s", l, body)
		}
	}
	switch w.format {
	case fmtOpenAI:
		checkOpenAIError(t, w, body)
	case fmtAnthropic:
		var e struct {
			Type  string `json:"type"`
			Error struct {
				Type    string `json:"type"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(body, &e); err != nil || e.Type != "error" || e.Error.Type != w.typ || e.Error.Message == "" {
			t.Fatalf("want an Anthropic %s error, got %s", w.typ, body)
		}
		checkMessage(t, w, e.Error.Message)
	case fmtOllama:
		var e map[string]any
		if err := json.Unmarshal(body, &e); err != nil || len(e) != 1 {
			t.Fatalf("want an Ollama error, got %s", body)
		}
		msg, ok := e["error"].(string)
		if !ok || msg == "" {
			t.Fatalf("want an Ollama error, got %s", body)
		}
		checkMessage(t, w, msg)
	case fmtOK:
		if !json.Valid(body) {
			t.Fatalf("the answer is not JSON: %.300s", body)
		}
	}
}

func checkOpenAIError(t *testing.T, w want, body []byte) {
	t.Helper()
	var e struct {
		Error *struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == nil || e.Error.Message == "" {
		t.Fatalf("want an OpenAI error object, got %s", body)
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	if e.Error.Type != w.typ || str(e.Error.Code) != w.code || str(e.Error.Param) != w.param {
		t.Fatalf("got type %q code %q param %q, want %q %q %q: %s", e.Error.Type, str(e.Error.Code), str(e.Error.Param), w.typ, w.code, w.param, body)
	}
	checkMessage(t, w, e.Error.Message)
}

func checkMessage(t *testing.T, w want, msg string) {
	t.Helper()
	if w.msg != "" && !strings.Contains(msg, w.msg) {
		t.Fatalf("message %q does not say %q", msg, w.msg)
	}
}

// checkHealthy checks the node still answers /healthz.
func checkHealthy(t *testing.T, e badEnv) {
	t.Helper()
	resp, err := http.Get(e.url + "/healthz")
	if err != nil {
		t.Fatalf("after the case /healthz failed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after the case /healthz answered %d", resp.StatusCode)
	}
}

// checkServes checks a good request of each family still works.
func checkServes(t *testing.T, e badEnv) {
	t.Helper()
	for _, tc := range []badCase{
		{name: "chat", path: "/v1/chat/completions", body: `{"model":"chat","messages":[{"role":"user","content":"hi"}],"max_tokens":4}`},
		{name: "messages", path: "/v1/messages", body: `{"model":"chat","max_tokens":4,"messages":[{"role":"user","content":"hi"}]}`, cred: credKeyOf},
		{name: "ollama", path: "/api/chat", body: `{"model":"chat","stream":false,"messages":[{"role":"user","content":"hi"}],"options":{"num_predict":4}}`, cred: credUser},
		{name: "admin", path: "/admin/v1/deployments"},
	} {
		if status, body := e.send(t, tc); status != 200 {
			t.Fatalf("after the table a good %s request got %d: %.300s", tc.name, status, body)
		}
	}
}

// TestSlowLorisIsCut: a client that sends its headers one byte every
// 100 ms is cut off by the read timeout, and the node keeps serving.
func TestSlowLorisIsCut(t *testing.T) {
	sim := ollamasim.StartTest(t, ollamasim.Config{})
	const timeout = 500 * time.Millisecond
	n := testnode.Start(t, sim.URL(), func(cfg *node.Config) { cfg.ReadTimeout = timeout })
	conn, err := net.Dial("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req := "POST /v1/chat/completions HTTP/1.1\r\nHost: " + n.Addr() + "\r\nAuthorization: Bearer " + testnode.Token +
		"\r\nContent-Type: application/json\r\nX-Slow: " + strings.Repeat("s", 200) + "\r\n\r\n"
	start := time.Now()
	// The server's answer (a 408 is as good as a close), or the end of
	// the connection.
	cut := make(chan int, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			cut <- 0
			return
		}
		resp.Body.Close()
		cut <- resp.StatusCode
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	sent := 0
	for sent < len(req) {
		select {
		case status := <-cut:
			if status != 0 && status != http.StatusRequestTimeout {
				t.Fatalf("the server answered %d to a request it had not read whole (%d of %d bytes)", status, sent, len(req))
			}
			elapsed := time.Since(start)
			if elapsed < timeout || elapsed > timeout+2*time.Second {
				t.Fatalf("cut after %v; want about %v", elapsed, timeout)
			}
			t.Logf("cut after %v and %d bytes (status %d)", elapsed, sent, status)
			checkHealthy(t, badEnv{url: n.URL()})
			return
		case <-tick.C:
			if _, err := conn.Write([]byte{req[sent]}); err != nil {
				t.Logf("write failed after %v: %v", time.Since(start), err)
			}
			sent++
		}
	}
	t.Fatalf("the whole request went out at one byte per 100ms (%v) and the server did not cut it", time.Since(start))
}

// fmtCount is n repeated items made by item, comma-separated.
func fmtCount(n int, item string) string {
	return strings.TrimSuffix(strings.Repeat(item+",", n), ",")
}

// nested is a value nested depth arrays deep.
func nested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}
