package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// simModel is the chat model every simulator holds (a catalog model, so
// that the scheduler knows its size), and deployment the name the
// benchmark deploys it under and asks sovra for.
const (
	simModel   = "llama3.2:1b"
	deployment = "bench-chat"
	// chatPath is the API the load uses, through sovra and straight to the
	// simulators alike: Ollama's streaming chat (NDJSON).
	chatPath = "/api/chat"
	// assistantTokensPerToken estimates the prompt tokens an answer costs
	// when it comes back in the history, per generated token: the
	// simulator's words cost one token per started four bytes.
	assistantTokensPerToken = 1.8
	// messageOverhead is what the simulator charges per chat message on
	// top of its text (ollamasim's messageSegment).
	messageOverhead = 4
)

// nodeSpec is one simulated GPU host: its speed and slots and what follows
// from them.
type nodeSpec struct {
	ID    string  `json:"id"`
	Speed float64 `json:"speed"`
	Slots int     `json:"slots"`
	// TTFT, PromptCost and CachedCost are the simulator's base time to
	// first token and costs per prompt token (uncached and cached).
	TTFT       time.Duration `json:"ttft_ns"`
	PromptCost time.Duration `json:"prompt_token_cost_ns"`
	CachedCost time.Duration `json:"cached_token_cost_ns"`
	// TokenRate is the decode speed of one stream; Interval the time
	// between two tokens.
	TokenRate float64       `json:"tokens_per_second"`
	Interval  time.Duration `json:"interval_ns"`
	// Prefill, Service and Capacity are the single-turn request's time to
	// first token and whole service time, and the requests per second the
	// node completes with every slot busy.
	Prefill  time.Duration `json:"prefill_ns"`
	Service  time.Duration `json:"service_ns"`
	Capacity float64       `json:"capacity"`
	// MTService is the mean service time of a multi-turn request whose
	// history is cached, over the turns; MTCapacity the matching capacity.
	MTService  time.Duration `json:"mt_service_ns"`
	MTCapacity float64       `json:"mt_capacity"`
}

// routeSetup is the simulated cluster and the workloads' shapes.
type routeSetup struct {
	Nodes        []nodeSpec `json:"nodes"`
	Model        string     `json:"model"`
	Deployment   string     `json:"deployment"`
	Endpoint     string     `json:"endpoint"`
	AnswerTokens int        `json:"answer_tokens"`
	// PromptTokens is the single-turn prompt as the simulator counts it.
	PromptTokens int `json:"prompt_tokens"`
	// Capacity is the sum of the nodes' capacities, requests per second.
	Capacity float64 `json:"capacity"`

	Turns        int     `json:"turns"`
	SystemTokens int     `json:"system_tokens"`
	UserTokens   int     `json:"user_tokens"`
	ReplyTokens  float64 `json:"reply_tokens_estimate"`
	MTCapacity   float64 `json:"mt_capacity"`
	MTLoad       float64 `json:"mt_load"`
}

// newRouteSetup derives the setup from the flags.
func newRouteSetup(f *routeFlags) routeSetup {
	s := routeSetup{
		Model: simModel, Deployment: deployment, Endpoint: chatPath, AnswerTokens: f.answerTokens,
		PromptTokens: messageOverhead + f.promptWords,
		Turns:        f.turns, SystemTokens: messageOverhead + f.systemWords, UserTokens: messageOverhead + f.userWords,
		ReplyTokens: messageOverhead + assistantTokensPerToken*float64(f.answerTokens),
		MTLoad:      f.mtLoad,
	}
	for i, speed := range f.speeds {
		n := nodeSpec{
			ID: fmt.Sprintf("n%d", i+1), Speed: speed, Slots: f.slots[i],
			TTFT:       scaleDur(f.ttft, speed),
			PromptCost: scaleDur(f.promptCost, speed),
			CachedCost: scaleDur(f.cachedCost, speed),
			TokenRate:  f.tokenRate * speed,
		}
		n.Interval = time.Duration(float64(time.Second) / n.TokenRate)
		n.Prefill = n.prefill(s.PromptTokens, 0)
		n.Service = n.service(s.AnswerTokens, s.PromptTokens, 0)
		n.Capacity = float64(n.Slots) / n.Service.Seconds()
		var sum time.Duration
		for k := range s.Turns {
			unc, cached := s.turnTokens(k, true)
			sum += n.service(s.AnswerTokens, unc+cached, cached)
		}
		n.MTService = sum / time.Duration(s.Turns)
		n.MTCapacity = float64(n.Slots) / n.MTService.Seconds()
		s.Capacity += n.Capacity
		s.MTCapacity += n.MTCapacity
		s.Nodes = append(s.Nodes, n)
	}
	return s
}

// scaleDur is d on a host of the given speed.
func scaleDur(d time.Duration, speed float64) time.Duration {
	return time.Duration(float64(d) / speed)
}

// prefill is the simulator's time to first token for a prompt of total
// tokens of which cached come from its prefix cache (ollamasim's
// generate: at least one token is always evaluated).
func (n nodeSpec) prefill(total, cached int) time.Duration {
	cached = max(0, min(cached, total-1))
	return n.TTFT + time.Duration(total-cached)*n.PromptCost + time.Duration(cached)*n.CachedCost
}

// service is the simulator's whole generation time: the prefill, then one
// interval per token after the first.
func (n nodeSpec) service(answer, total, cached int) time.Duration {
	return n.prefill(total, cached) + time.Duration(answer-1)*n.Interval
}

// turnTokens estimates the prompt of turn k (from 0) of a conversation:
// the tokens evaluated and those found in the prefix cache, with the whole
// history cached (hit) or only the shared system prompt.
func (s routeSetup) turnTokens(k int, hit bool) (uncached, cached int) {
	history := k*s.UserTokens + int(float64(k)*s.ReplyTokens)
	if hit {
		return s.UserTokens, s.SystemTokens + history
	}
	return history + s.UserTokens, s.SystemTokens
}

// rate is the arrival rate at load percent of capacity.
func (s routeSetup) rate(load float64) float64 { return load / 100 * s.Capacity }

// convRate is the conversation arrival rate at load percent of the
// multi-turn capacity.
func (s routeSetup) convRate(load float64, turns int) float64 {
	return load / 100 * s.MTCapacity / float64(turns)
}

// meanMTService is the mean service time of a multi-turn request per
// slot over the cluster: all the slots over the multi-turn capacity.
func (s routeSetup) meanMTService() time.Duration {
	slots := 0
	for _, n := range s.Nodes {
		slots += n.Slots
	}
	return time.Duration(float64(slots) / s.MTCapacity * float64(time.Second))
}

// maxService is the longest single-turn service time of any node.
func (s routeSetup) maxService() time.Duration {
	var m time.Duration
	for _, n := range s.Nodes {
		m = max(m, n.Service)
	}
	return m
}

func (s routeSetup) slots() []int {
	out := make([]int, len(s.Nodes))
	for i, n := range s.Nodes {
		out[i] = n.Slots
	}
	return out
}

func (s routeSetup) ids() []string {
	out := make([]string, len(s.Nodes))
	for i, n := range s.Nodes {
		out[i] = n.ID
	}
	return out
}

// capacities are the nodes' capacities by id (single-turn, or with the
// history cached when mt is set).
func (s routeSetup) capacities(mt bool) map[string]float64 {
	out := map[string]float64{}
	for _, n := range s.Nodes {
		out[n.ID] = n.Capacity
		if mt {
			out[n.ID] = n.MTCapacity
		}
	}
	return out
}

// simArgs are the flags of node n's simulator.
func (n nodeSpec) simArgs(addr string, answerTokens int) []string {
	return []string{
		"--addr", addr, "--name", n.ID,
		"--models", simModel, "--loaded", simModel, "--registry", "none",
		"--ttft", n.TTFT.String(), "--prompt-token-cost", n.PromptCost.String(),
		"--cached-token-cost", n.CachedCost.String(),
		"--tokens-per-second", strconv.FormatFloat(n.TokenRate, 'g', -1, 64),
		"--parallel", strconv.Itoa(n.Slots), "--max-queue", "100000",
		"--response-tokens", strconv.Itoa(answerTokens),
		"--prefix-cache", "1024",
		"--load", "0s", "--keep-alive", "-1s", "--shutdown-timeout", "1s",
	}
}

// summaryLine is the setup in one line, for the progress log.
func (s routeSetup) summaryLine() string {
	var parts []string
	for _, n := range s.Nodes {
		parts = append(parts, fmt.Sprintf("%s %gx/%d slots %.0fms", n.ID, n.Speed, n.Slots, ms(n.Service)))
	}
	return fmt.Sprintf("%s; capacity %.2f req/s", strings.Join(parts, ", "), s.Capacity)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
