package ollamasim

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/ollama/ollama/api"
)

// sink receives the messages of a generation: chat or generate shaped,
// streamed or collected into one answer.
type sink interface {
	send(pc piece) error
	done(p *plan, met api.Metrics) error
}

// ndjson writes a stream of JSON lines, flushing each.
type ndjson struct {
	w       http.ResponseWriter
	started bool
}

func (n *ndjson) write(v any) error {
	if !n.started {
		n.w.Header().Set("Content-Type", "application/x-ndjson")
		n.w.WriteHeader(http.StatusOK)
		n.started = true
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := n.w.Write(append(b, '\n')); err != nil {
		return err
	}
	return http.NewResponseController(n.w).Flush()
}

// chatSink shapes pieces as /api/chat responses.
type chatSink struct {
	model  string
	stream bool
	nd     ndjson
	acc    api.Message
}

func newChatSink(w http.ResponseWriter, model string, stream bool) *chatSink {
	return &chatSink{model: model, stream: stream, nd: ndjson{w: w}, acc: api.Message{Role: "assistant"}}
}

func (c *chatSink) send(pc piece) error {
	if !c.stream {
		c.acc.Content += pc.content
		c.acc.Thinking += pc.thinking
		c.acc.ToolCalls = append(c.acc.ToolCalls, pc.calls...)
		return nil
	}
	return c.nd.write(api.ChatResponse{
		Model: c.model, CreatedAt: time.Now().UTC(),
		Message: api.Message{Role: "assistant", Content: pc.content, Thinking: pc.thinking, ToolCalls: pc.calls},
	})
}

func (c *chatSink) done(p *plan, met api.Metrics) error {
	resp := api.ChatResponse{
		Model: c.model, CreatedAt: time.Now().UTC(), Message: api.Message{Role: "assistant"},
		Done: true, DoneReason: p.doneReason, Metrics: met,
	}
	if !c.stream {
		resp.Message = c.acc
		writeJSON(c.nd.w, http.StatusOK, resp)
		return nil
	}
	return c.nd.write(resp)
}

// generateSink shapes pieces as /api/generate responses.
type generateSink struct {
	model    string
	stream   bool
	seed     uint64
	nd       ndjson
	response strings.Builder
	thinking strings.Builder
}

func (g *generateSink) send(pc piece) error {
	if !g.stream {
		g.response.WriteString(pc.content)
		g.thinking.WriteString(pc.thinking)
		return nil
	}
	return g.nd.write(api.GenerateResponse{
		Model: g.model, CreatedAt: time.Now().UTC(), Response: pc.content, Thinking: pc.thinking,
	})
}

func (g *generateSink) done(p *plan, met api.Metrics) error {
	resp := api.GenerateResponse{
		Model: g.model, CreatedAt: time.Now().UTC(), Done: true, DoneReason: p.doneReason,
		Context: contextIDs(p, g.seed), Metrics: met,
	}
	if !g.stream {
		resp.Response, resp.Thinking = g.response.String(), g.thinking.String()
		writeJSON(g.nd.w, http.StatusOK, resp)
		return nil
	}
	return g.nd.write(resp)
}

// serve runs a planned generation: it takes a slot (or answers 503),
// loads the model if needed and sends the answer.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, tr *track, m *model, keepAlive time.Duration, p *plan, out sink) {
	ctx := r.Context()
	if err := s.acquire(ctx, m, keepAlive); err != nil {
		if errors.Is(err, errBusy) {
			tr.rec.Error = err.Error()
			writeError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		tr.cancelled = true
		return
	}
	defer s.release(m)
	loadDur, err := s.ensureLoaded(ctx, m, keepAlive)
	if err != nil {
		tr.cancelled = true
		return
	}
	s.generate(ctx, w, tr, m, p, out, loadDur)
}

// generate paces the plan's pieces: the prompt costs the time to first
// token, then every token costs 1/TokensPerSecond. It stops as soon as ctx
// ends and applies the drop and stall faults between pieces.
func (s *Server) generate(ctx context.Context, w http.ResponseWriter, tr *track, m *model, p *plan, out sink, loadDur time.Duration) {
	cached := s.cachedPrefix(m, p.segs, p.promptTokens)
	tr.rec.PromptTokens, tr.rec.CachedTokens = p.promptTokens, cached
	evalStart := time.Now()
	promptDur := m.p.ttft + time.Duration(p.promptTokens-cached)*m.p.promptCost + time.Duration(cached)*m.p.cachedCost
	if err := sleep(ctx, promptDur); err != nil {
		tr.cancelled = true
		return
	}
	tokenStart := time.Now()
	var interval time.Duration
	if m.p.tps > 0 {
		interval = time.Duration(float64(time.Second) / m.p.tps)
	}
	due := tokenStart
	for i, pc := range p.pieces {
		if s.chunkFault(ctx, w, tr, m, i) {
			return
		}
		wait := pc.tokens
		if i == 0 {
			wait-- // the first token is part of the time to first token
		}
		due = due.Add(time.Duration(wait) * interval)
		if err := sleepUntil(ctx, due); err != nil {
			tr.cancelled = true
			return
		}
		if err := out.send(pc); err != nil {
			tr.cancelled = true
			return
		}
		if i == 0 {
			tr.rec.FirstChunk = time.Since(tr.rec.Start)
		}
		tr.rec.Chunks++
	}
	if s.chunkFault(ctx, w, tr, m, len(p.pieces)) {
		return
	}
	met := api.Metrics{
		TotalDuration: time.Since(tr.rec.Start), LoadDuration: loadDur,
		PromptEvalCount: p.promptTokens, PromptEvalDuration: tokenStart.Sub(evalStart),
		EvalCount: p.evalTokens, EvalDuration: time.Since(tokenStart),
	}
	if err := out.done(p, met); err != nil {
		tr.cancelled = true
		return
	}
	tr.rec.Chunks++
	tr.rec.EvalTokens, tr.rec.DoneReason = p.evalTokens, p.doneReason
	segs := p.segs[:len(p.segs):len(p.segs)]
	if p.reply.material != "" {
		segs = append(segs, p.reply)
	}
	s.remember(m, segs)
}

// prefixEntry is a remembered prompt: the running hash after each segment
// and the running token count.
type prefixEntry struct {
	hashes []uint64
	tokens []int
}

func entryOf(segs []segment) prefixEntry {
	e := prefixEntry{hashes: make([]uint64, len(segs)), tokens: make([]int, len(segs))}
	var h uint64
	total := 0
	for i, sg := range segs {
		h = chainHash(h, sg.material)
		total += sg.tokens
		e.hashes[i], e.tokens[i] = h, total
	}
	return e
}

// cachedPrefix is the number of prompt tokens the model's prefix cache
// covers: the longest run of leading segments shared with a remembered
// prompt. At least one token is always evaluated.
func (s *Server) cachedPrefix(m *model, segs []segment, total int) int {
	if m.p.prefixCache <= 0 {
		return 0
	}
	e := entryOf(segs)
	best := 0
	s.mu.Lock()
	for _, old := range m.prefixes {
		j := 0
		for j < len(old.hashes) && j < len(e.hashes) && old.hashes[j] == e.hashes[j] {
			j++
		}
		if j > 0 {
			best = max(best, e.tokens[j-1])
		}
	}
	s.mu.Unlock()
	return max(0, min(best, total-1))
}

// remember adds a prompt (with its answer) to the model's prefix cache.
func (s *Server) remember(m *model, segs []segment) {
	if m.p.prefixCache <= 0 {
		return
	}
	e := entryOf(segs)
	s.mu.Lock()
	defer s.mu.Unlock()
	m.prefixes = append(m.prefixes, e)
	if over := len(m.prefixes) - m.p.prefixCache; over > 0 {
		m.prefixes = append(m.prefixes[:0:0], m.prefixes[over:]...)
	}
}
