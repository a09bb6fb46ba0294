package api

import (
	"net"
	"net/http/httptest"
	"testing"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// Under DashboardPath the dashboard checks the origin itself (its own
// only), so the allow-list does not refuse its forms there; every other
// path keeps it.
func TestDashboardPathChecksItsOwnOrigin(t *testing.T) {
	do := testApp(t, func(c *Config) { c.DashboardPath = "/ui" })
	for path, want := range map[string]int{"/ui/signin": 404, "/ui": 404, "/uix": 403, "/v1/models": 403, "/admin/v1/nodes": 403} {
		req := httptest.NewRequest("POST", path, nil)
		req.Header.Set("Origin", "https://evil.example")
		if st, _, body := do(req); st != want {
			t.Errorf("POST %s from another origin: %d, want %d: %s", path, st, want, body)
		}
	}
}

// Requests made inside the node (the dashboard's admin calls) are served
// by the whole app and logged at debug level.
func TestInProcessRequestsLogAtDebug(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	s := New(testConfig(), &fakeBackend{chat: words("hi")}, nil, zap.New(core))
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	var ctx fasthttp.RequestCtx
	ctx.Init2(c1, nil, false)
	ctx.Request.SetRequestURI("/healthz")
	ctx.Request.Header.SetHost("127.0.0.1")
	s.InProcess()(&ctx)
	if ctx.Response.StatusCode() != 200 {
		t.Fatalf("in-process healthz: %d", ctx.Response.StatusCode())
	}
	resp, err := s.App().Test(httptest.NewRequest("GET", "/healthz", nil), -1)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var levels []zapcore.Level
	for _, e := range logs.FilterMessage("request").All() {
		levels = append(levels, e.Level)
	}
	if len(levels) != 2 || levels[0] != zapcore.DebugLevel || levels[1] != zapcore.InfoLevel {
		t.Fatalf("request log levels %v, want debug (in process) then info", levels)
	}
}
