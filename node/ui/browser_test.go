package ui_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testcluster"
	"github.com/sovra/sovra/node"
)

// The end-to-end test of the dashboard drives headless Chromium against a
// real three-node cluster: the page refuses access without an admin
// credential, signs in, shows the nodes and a deployment, follows a
// replica's change of state without a reload, cordons a node after a
// confirmation step, shows usage and the audit log, and signs out. It
// saves a screenshot of each page in $SOVRA_UI_ARTIFACTS (default: a
// temporary directory).

// findChromium returns Chromium's path, or skips the test (fails it with
// SOVRA_REQUIRE_CHROMIUM=1).
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const msg = "Chromium is not installed: the dashboard's browser test needs Debian's chromium package (apt-get install -y chromium)"
	if os.Getenv("SOVRA_REQUIRE_CHROMIUM") == "1" {
		t.Fatal(msg + "; SOVRA_REQUIRE_CHROMIUM=1 forbids skipping")
	}
	t.Skip(msg)
	return ""
}

// artifacts is the directory the screenshots go to.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SOVRA_UI_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tab is one Chromium tab with what the test needs around it.
type tab struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	base string
}

// newTab starts Chromium (a fresh profile, no network beyond loopback in
// use) and opens a tab.
func newTab(t *testing.T, base string) *tab {
	t.Helper()
	path := findChromium(t)
	var out bytes.Buffer
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 900),
		chromedp.CombinedOutput(&out),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		if t.Failed() && out.Len() > 0 {
			t.Logf("chromium's output:\n%s", out.String())
		}
	})
	// The first action starts the browser: without a deadline, which
	// would stop it (later steps have theirs).
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &tab{t: t, ctx: ctx, dir: artifacts(t), base: base}
}

// stepTimeout bounds each browser step (the cluster settles within it).
const stepTimeout = 45 * time.Second

// do runs steps, failing the test on an error.
func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot("failed-" + strings.ReplaceAll(what, " ", "-"))
		b.t.Fatalf("%s: %v", what, err)
	}
}

// load runs an action that makes the tab load a page (a click on a link
// or a submit button) and waits for the new page's load event, so that
// the steps after it see the new page, not the old.
func load(trigger chromedp.Action[chromedp.Void]) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.WaitEvent(page.LoadEventFired, nil, trigger)(ctx, t)
		return chromedp.Void{}, err
	}
}

// eval evaluates a JavaScript expression.
func eval[T any](b *tab, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// text is the visible text of the element sel.
func (b *tab) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// waitFor waits until the JavaScript predicate holds.
func (b *tab) waitFor(what, predicate string) {
	b.t.Helper()
	b.do(what, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingTimeout(stepTimeout), chromedp.WithPollingInterval(50*time.Millisecond)))
}

// shot saves a screenshot of the whole page as name.png.
func (b *tab) shot(name string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(b.dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Error(err)
	}
}

// signin fills in the sign-in form.
func (b *tab) signin(cred string) {
	b.t.Helper()
	b.do("sign in",
		chromedp.WaitVisible(chromedp.ID("credential")),
		chromedp.SendKeys(chromedp.ID("credential"), cred),
		load(chromedp.Click(chromedp.ID("signin"))),
	)
}

func TestDashboardInChromium(t *testing.T) {
	findChromium(t)
	// Models not on a node's disk take a while to pull, so that the page
	// can show the pull.
	sim := ollamasim.Config{PullDuration: 4 * time.Second}
	c := testcluster.Start(t, []testcluster.Spec{{ID: "n1", Sim: sim}, {ID: "n2", Labels: "gpu=a100", Sim: sim}, {ID: "n3", Sim: sim}},
		func(cfg *node.Config) { cfg.Usage.Flush = 200 * time.Millisecond })
	ctx := context.Background()
	admin := c.Client("n1")
	tenant, err := admin.CreateKey(ctx, client.KeyRequest{Name: ptr("team <b>a</b>")})
	if err != nil {
		t.Fatal(err)
	}
	b := newTab(t, c.URL("n1")+"/ui")
	start := time.Now()

	refusesWithoutAKey(t, b, c.URL("n1"), tenant.Secret)
	// Signed in, the browser is back on the page it asked for.
	b.signin(testcluster.Token)
	b.do("nodes after sign-in", chromedp.WaitVisible(chromedp.CSS(`#nodes tr[data-node="n3"]`)))
	b.do("overview", load(chromedp.Click(chromedp.CSS(`nav a[href="/ui/"]`))), chromedp.WaitVisible(chromedp.CSS(`#members tr[data-node="n3"]`)))
	for _, id := range c.IDs {
		b.do("member "+id, chromedp.WaitVisible(chromedp.CSS(`#members tr[data-node="`+id+`"][data-status="ready"]`)))
	}

	// A deployment made elsewhere appears on the open overview.
	b.markPage()
	one := 1
	if _, err := admin.CreateDeployment(ctx, client.DeploymentRequest{Name: "chat", Model: "llama3.2:1b", Replicas: &one}); err != nil {
		t.Fatal(err)
	}
	b.do("deployment on the overview", chromedp.WaitVisible(chromedp.CSS(`#deployments tr[data-deployment="chat"][data-status="ok"]`)))
	b.checkNotReloaded("overview")

	// One that no node can take is listed first, as a problem, and its
	// page opens the scheduler's explanation.
	if _, err := admin.CreateDeployment(ctx, client.DeploymentRequest{Name: "big", Model: "llama3.2:1b", Replicas: &one,
		Constraints: []string{"gpu=h100"}}); err != nil {
		t.Fatal(err)
	}
	b.do("unplaceable deployment first", chromedp.WaitVisible(chromedp.CSS(`#health ul.problems a[href="/ui/deployments/big"]`)))
	if first := eval[string](b, `document.querySelector("#deployments tbody tr").dataset.deployment`); first != "big" {
		t.Fatalf("the first deployment listed is %q", first)
	}
	b.shot("overview")
	b.do("unplaceable deployment's page", load(chromedp.Click(chromedp.CSS(`#deployments a[href="/ui/deployments/big"]`))),
		chromedp.WaitVisible(chromedp.CSS(`#explain-details[open] tr[data-verdict="rejected"]`)))
	b.shot("unplaceable")
	b.do("back to the overview", load(chromedp.Click(chromedp.CSS(`nav a[href="/ui/"]`))),
		chromedp.WaitVisible(chromedp.CSS(`#deployments tr[data-deployment="chat"]`)))

	followsAReplica(t, b, admin)
	useTheModel(t, c, tenant.Secret)
	cordonsANode(t, b, admin)
	showsUsageAndAudit(t, b)

	b.do("sign out", load(chromedp.Click(chromedp.CSS(`form.signout button`))), chromedp.WaitVisible(chromedp.ID("credential")))
	b.do("pages after sign-out", chromedp.Navigate(b.base+"/nodes"), chromedp.WaitVisible(chromedp.ID("credential")))
	t.Logf("browser steps took %v; screenshots in %s", time.Since(start).Round(time.Millisecond), b.dir)
}

// refusesWithoutAKey checks that nothing is shown without a session, and
// that wrong and non-admin credentials cannot sign in.
func refusesWithoutAKey(t *testing.T, b *tab, url, inferenceKey string) {
	t.Helper()
	for _, path := range []string{"/ui/events", "/ui/nodes/n1/cordon"} {
		req, _ := http.NewRequest(http.MethodGet, url+path, nil)
		if path == "/ui/nodes/n1/cordon" {
			req.Method = http.MethodPost
		}
		resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s %s without a session: %d", req.Method, path, resp.StatusCode)
		}
	}
	b.do("open the dashboard", chromedp.Navigate(b.base+"/nodes"), chromedp.WaitVisible(chromedp.ID("credential")))
	if loc := eval[string](b, "location.pathname"); loc != "/ui/signin" {
		t.Fatalf("without a session the dashboard shows %s", loc)
	}
	if strings.Contains(eval[string](b, "document.body.innerText"), "n2") {
		t.Fatal("the sign-in page shows cluster data")
	}
	b.shot("signin")
	for _, tc := range []struct{ cred, says string }{
		{"sk-sovra-not-a-key", "not a valid credential"}, {inferenceKey, "may not administer"},
	} {
		b.signin(tc.cred)
		b.do("refusal", chromedp.WaitVisible(chromedp.ID("signin-error")))
		if got := b.text("#signin-error"); !strings.Contains(got, tc.says) {
			t.Fatalf("refusal says %q, want %q", got, tc.says)
		}
	}
	b.shot("signin-refused")
}

// followsAReplica opens the deployment and scales it: the new replica
// shows up and turns ready on the open page, which is not reloaded.
func followsAReplica(t *testing.T, b *tab, admin *client.Client) {
	t.Helper()
	b.do("open the deployment", load(chromedp.Click(chromedp.CSS(`#deployments a[href="/ui/deployments/chat"]`))),
		chromedp.WaitVisible(chromedp.CSS(`#replicas tr[data-state="ready"]`)))
	if n := eval[int](b, `document.querySelectorAll("#replicas tbody tr[data-node]").length`); n != 1 {
		t.Fatalf("%d replicas shown, want 1", n)
	}
	b.markPage()
	if _, err := admin.ScaleDeployment(context.Background(), "chat", 2); err != nil {
		t.Fatal(err)
	}
	b.waitFor("a second replica turns ready", `document.querySelectorAll('#replicas tr[data-state="ready"]').length === 2`)
	b.checkNotReloaded("deployment")
	if got := b.text("#ready-count"); got != "2" {
		t.Fatalf("ready count %q", got)
	}
	b.shot("deployment")

	// A model no node has is pulled: the page shows the pull, then the
	// replica turns ready, without a reload.
	one := 1
	if _, err := admin.CreateDeployment(context.Background(), client.DeploymentRequest{Name: "fresh", Model: "llama3.1:8b", Replicas: &one}); err != nil {
		t.Fatal(err)
	}
	b.do("open the new deployment", chromedp.Navigate(b.base+"/deployments/fresh"),
		chromedp.WaitVisible(chromedp.CSS(`#replicas tr[data-state="pulling"]`)))
	b.markPage()
	b.shot("pulling")
	b.do("the pulled replica turns ready", chromedp.WaitVisible(chromedp.CSS(`#replicas tr[data-state="ready"]`)))
	b.checkNotReloaded("pulling deployment")
}

// useTheModel sends a few chats with the tenant's key, for the usage
// page.
func useTheModel(t *testing.T, c *testcluster.Cluster, key string) {
	t.Helper()
	for range 3 {
		req, _ := http.NewRequest(http.MethodPost, c.URL("n2")+"/v1/chat/completions",
			strings.NewReader(`{"model":"chat","messages":[{"role":"user","content":"hello"}]}`))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("chat: %d", resp.StatusCode)
		}
	}
}

// cordonsANode cordons n3 from the nodes page through the confirmation
// step, and checks the cluster took it.
func cordonsANode(t *testing.T, b *tab, admin *client.Client) {
	t.Helper()
	b.do("nodes page", load(chromedp.Click(chromedp.CSS(`nav a[href="/ui/nodes"]`))),
		chromedp.WaitVisible(chromedp.CSS(`#nodes tr[data-node="n3"] a[data-action="cordon"]`)))
	b.shot("nodes")
	b.do("ask to cordon", load(chromedp.Click(chromedp.CSS(`#nodes tr[data-node="n3"] a[data-action="cordon"]`))),
		chromedp.WaitVisible(chromedp.ID("confirm")))
	if n, _ := admin.Node(context.Background(), "n3"); n == nil || n.Status != client.NodeReady {
		t.Fatalf("the confirmation page changed the node: %+v", n)
	}
	b.do("reason", chromedp.SendKeys(chromedp.ID("reason"), "dashboard test"))
	b.shot("confirm")
	b.do("confirm", load(chromedp.Click(chromedp.ID("confirm"))), chromedp.WaitVisible(chromedp.ID("done")))
	b.waitFor("n3 shown cordoned", `document.querySelector("#node-status").innerText.includes("cordoned")`)
	n, err := admin.Node(context.Background(), "n3")
	if err != nil || n.Status != client.NodeCordoned || n.StatusReason != "dashboard test" {
		t.Fatalf("n3 after the cordon: %+v, %v", n, err)
	}
	b.shot("node")
}

// showsUsageAndAudit opens the keys and usage page (the chart appears once
// the nodes have written the usage) and the audit log with the cordon.
func showsUsageAndAudit(t *testing.T, b *tab) {
	t.Helper()
	b.do("keys page", load(chromedp.Click(chromedp.CSS(`nav a[href="/ui/keys"]`))), chromedp.WaitVisible(chromedp.ID("key-table")))
	b.do("usage chart", chromedp.WaitVisible(chromedp.CSS(`figure.chart svg rect`)))
	if got := b.text("#usage-totals"); !strings.Contains(got, "team <b>a</b>") || !strings.Contains(got, "chat") {
		t.Fatalf("usage totals:\n%s", got)
	}
	b.shot("keys")
	b.do("audit page", load(chromedp.Click(chromedp.CSS(`nav a[href="/ui/audit"]`))), chromedp.WaitVisible(chromedp.ID("chain-ok")))
	rows := b.text("#audit")
	if !strings.Contains(rows, "n3") || !strings.Contains(rows, "admin") {
		t.Fatalf("the audit log lacks the cordon:\n%s", rows)
	}
	b.shot("audit")
}

// markPage marks the page's window; checkNotReloaded fails if the mark is
// gone (the page was loaded again).
func (b *tab) markPage() {
	b.do("mark the page", chromedp.Evaluate[chromedp.Void](`window.sovraTestMark = "kept"`))
}

func (b *tab) checkNotReloaded(page string) {
	b.t.Helper()
	if got := eval[string](b, `String(window.sovraTestMark)`); got != "kept" {
		b.t.Fatalf("the %s page was reloaded (mark %q)", page, got)
	}
}

func ptr[T any](v T) *T { return &v }
