package ollamasim

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/ollama/ollama/api"
)

// segment is one part of a prompt (a chat message, a system prompt, ...):
// the text that identifies it for hashing and its token count.
type segment struct {
	material string
	tokens   int
}

// messageSegment renders a chat message. Thinking is left out: clients
// often drop it from the history they send back.
func messageSegment(msg api.Message) segment {
	var b strings.Builder
	b.WriteString(msg.Role + "\x00" + msg.Content + "\x00")
	tokens := 4 + CountTokens(msg.Content)
	for _, c := range msg.ToolCalls {
		args := c.Function.Arguments.String()
		b.WriteString(c.Function.Name + "\x00" + args + "\x00")
		tokens += 4 + len(args)/4
	}
	b.WriteString(strconv.Itoa(len(msg.Images)))
	return segment{material: b.String(), tokens: tokens + 768*len(msg.Images)}
}

// chatSegments are a chat request's prompt parts: its tools, then its
// messages.
func chatSegments(req *api.ChatRequest) []segment {
	var segs []segment
	if len(req.Tools) > 0 {
		t := req.Tools.String()
		segs = append(segs, segment{material: "tools\x00" + t, tokens: len(t) / 4})
	}
	for _, msg := range req.Messages {
		segs = append(segs, messageSegment(msg))
	}
	return segs
}

// generateSegments are a generate request's prompt parts.
func generateSegments(req *api.GenerateRequest) []segment {
	var segs []segment
	if req.System != "" {
		segs = append(segs, segment{"system\x00" + req.System, 4 + CountTokens(req.System)})
	}
	if len(req.Context) > 0 {
		b, _ := json.Marshal(req.Context)
		segs = append(segs, segment{"context\x00" + string(b), len(req.Context)})
	}
	segs = append(segs, segment{"prompt\x00" + req.Prompt, 4 + CountTokens(req.Prompt) + 768*len(req.Images)})
	if req.Suffix != "" {
		segs = append(segs, segment{"suffix\x00" + req.Suffix, CountTokens(req.Suffix)})
	}
	return segs
}

// textSeed makes the answer a function of the model, the seed option and
// the prompt parts (tools excluded).
func textSeed(model string, seed int, segs []segment) uint64 {
	h := hashStrings(model, strconv.Itoa(seed))
	for _, sg := range segs {
		if !strings.HasPrefix(sg.material, "tools\x00") {
			h = chainHash(h, sg.material)
		}
	}
	return h
}

// piece is one response message of a generation and the tokens it costs.
type piece struct {
	thinking string
	content  string
	calls    []api.ToolCall
	tokens   int
}

// plan is everything a generation sends, decided before it starts.
type plan struct {
	segs         []segment
	pieces       []piece
	promptTokens int
	evalTokens   int
	doneReason   string
	// reply is the answer as a chat message, for the prefix cache.
	reply segment
}

// genInput is what a plan depends on.
type genInput struct {
	segs   []segment
	seed   uint64
	tools  []api.Tool // tools the model calls
	think  int        // 0 off, 1 low, 2 medium, 3 high
	format formatKind
	schema api.ToolProperty
	opts   api.Options
}

// buildPlan decides the answer: reasoning first, then either tool calls or
// text, honouring num_predict (for reasoning and text together) and stop
// sequences (for text).
func buildPlan(m *model, in genInput) *plan {
	p := &plan{segs: in.segs, doneReason: "stop"}
	for _, sg := range in.segs {
		p.promptTokens += sg.tokens
	}
	p.promptTokens = max(p.promptTokens, 1)
	budget := -1
	if in.opts.NumPredict > 0 {
		budget = in.opts.NumPredict
	}
	if in.think > 0 {
		n := max(1, m.p.thinkTokens*[]int{0, 1, 2, 4}[in.think]/2)
		toks := sentenceTokens(&rng{s: chainHash(in.seed, "think")}, n)
		if budget >= 0 && budget < n {
			toks, p.doneReason = toks[:budget], "length"
		}
		for _, t := range toks {
			p.pieces = append(p.pieces, piece{thinking: t, tokens: 1})
		}
		p.evalTokens = len(toks)
		if p.doneReason == "length" {
			return p
		}
		if budget >= 0 {
			budget -= n
		}
	}
	if len(in.tools) > 0 {
		addToolCalls(p, in)
		return p
	}
	addText(m, p, in, budget)
	return p
}

func addToolCalls(p *plan, in genInput) {
	calls := toolCalls(in.tools, in.seed)
	b, _ := json.Marshal(calls)
	n := max(1, len(b)/4)
	p.pieces = append(p.pieces, piece{calls: calls, tokens: n})
	p.evalTokens += n
	p.reply = messageSegment(api.Message{Role: "assistant", ToolCalls: calls})
}

func addText(m *model, p *plan, in genInput, budget int) {
	r := &rng{s: in.seed}
	n := m.p.respTokens
	if n <= 0 {
		n = 16 + int(in.seed%49)
	}
	toks := sentenceTokens(r, n)
	if in.format != formatNone {
		toks = splitText(formatted(in.format, in.schema, r, toks))
	}
	out, spent, reason := cut(toks, in.opts.Stop, budget)
	for _, t := range out {
		p.pieces = append(p.pieces, piece{content: t, tokens: 1})
	}
	p.evalTokens += spent
	p.doneReason = reason
	p.reply = messageSegment(api.Message{Role: "assistant", Content: strings.Join(out, "")})
}

// thinkLevel resolves a request's "think" for a model: reasoning models
// think unless told not to; other models refuse think=true like Ollama.
func thinkLevel(m *model, reqModel string, t *api.ThinkValue) (int, error) {
	if !m.cfg.Thinking {
		if t != nil && t.Bool() {
			return 0, fmt.Errorf("%q does not support thinking", reqModel)
		}
		return 0, nil
	}
	if t == nil || t.Value == nil {
		return 2, nil
	}
	if !t.Bool() {
		return 0, nil
	}
	switch t.String() {
	case "low":
		return 1, nil
	case "high":
		return 3, nil
	default:
		return 2, nil
	}
}

// contextIDs is a deterministic stand-in for the token ids that
// /api/generate returns as "context".
func contextIDs(p *plan, seed uint64) []int {
	r := &rng{s: chainHash(seed, "context")}
	ids := make([]int, p.promptTokens+p.evalTokens)
	for i := range ids {
		ids[i] = r.intn(128000)
	}
	return ids
}
