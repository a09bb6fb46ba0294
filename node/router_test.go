package node_test

import (
	"context"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/internal/ollamasim"
	"github.com/sovra/sovra/internal/testnode"
	"github.com/sovra/sovra/node"
)

// TestRequestsReachTheNodeThatHasTheModel deploys a model on one node only
// and asks another node for it: the request is forwarded, streamed back,
// and the client's hang-up reaches the backend that served it.
func TestRequestsReachTheNodeThatHasTheModel(t *testing.T) {
	empty := ollamasim.StartTest(t, ollamasim.Config{Name: "empty", Models: []ollamasim.ModelConfig{}, Registry: []ollamasim.ModelConfig{}})
	holder := ollamasim.StartTest(t, ollamasim.Config{Name: "holder"})
	n1 := testnode.Start(t, empty.URL(), member("n1"), gpus("none"))
	testnode.Start(t, holder.URL(), member("n2", n1.Addr()), gpus("1xA100:80GiB"))
	waitView(t, n1.URL(), allReady(2))
	deployOn(t, n1, "served", "llama3.2:1b", "n2")

	c := openai.NewClient(option.WithBaseURL(n1.URL()+"/v1/"), option.WithAPIKey(testnode.Token), option.WithMaxRetries(0))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, model := range []string{"served", "llama3.2:1b"} {
		resp, err := c.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
			Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		if resp.Model != model || resp.Choices[0].Message.Content == "" {
			t.Errorf("%s: model %q content %q", model, resp.Model, resp.Choices[0].Message.Content)
		}
	}
	// The agents list, load and pin models too: count the chats.
	if got := chats(holder, "llama3.2:1b"); got != 2 {
		t.Errorf("the node holding the model served %d chats, want 2", got)
	}
	if got := chats(empty, ""); got != 0 {
		t.Errorf("the node without the model got %d chats", got)
	}
	page, err := c.Models.List(ctx)
	if err != nil || !listed(page.Data, "served") {
		t.Errorf("/v1/models on n1 lacks the deployment: %v %+v", err, page)
	}

	t.Run("hang-up crosses the hop", func(t *testing.T) {
		holder.SetStallAfter(2)
		defer holder.SetStallAfter(-1)
		sctx, scancel := context.WithCancel(context.Background())
		st := c.Chat.Completions.NewStreaming(sctx, openai.ChatCompletionNewParams{
			Model: "served", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		})
		if !st.Next() {
			t.Fatalf("no first chunk: %v", st.Err())
		}
		hungUp := time.Now()
		scancel()
		wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer wcancel()
		if err := holder.WaitFor(wctx, func(s ollamasim.Stats) bool { return s.Cancelled == 1 }); err != nil {
			t.Fatalf("the serving backend never saw the hang-up: %+v", holder.Stats())
		}
		if d := holder.Cancellations()[0].End.Sub(hungUp); d > hangupBound {
			t.Errorf("the hang-up took %v to reach the backend, want within %v", d, hangupBound)
		}
	})
}

// chats counts the chat requests a simulated Ollama received, for one
// model or ("") any.
func chats(sim *ollamasim.Server, model string) int {
	n := 0
	for _, r := range sim.Requests() {
		if r.Endpoint == "/api/chat" && (model == "" || r.Model == model) {
			n++
		}
	}
	return n
}

func gpus(spec string) func(*node.Config) {
	return func(c *node.Config) { c.Cluster.GPUs = spec }
}

// deployOn writes a deployment placed on one node and reports it ready.
func deployOn(t *testing.T, n *node.Node, name, model, on string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmds := []state.Command{
		{Type: state.TypePutDeployment, Body: state.PutDeployment{Deployment: state.Deployment{Name: name, Model: model, Replicas: 1}}},
		{Type: state.TypeSetPlacements, Body: state.SetPlacements{Deployments: map[string][]string{name: {on}}}},
		{Type: state.TypeReportPlacement, Body: state.ReportPlacement{Deployment: name, Node: on, State: state.PlacementReady}},
	}
	for _, cmd := range cmds {
		if _, err := n.Cluster().Apply(ctx, cmd); err != nil {
			t.Fatalf("%v: %v", cmd.Type, err)
		}
	}
}

func listed(models []openai.Model, id string) bool {
	for _, m := range models {
		if m.ID == id {
			return true
		}
	}
	return false
}
