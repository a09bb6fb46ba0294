package api

import (
	"github.com/ollama/ollama/anthropic"
	"github.com/ollama/ollama/api"
)

// Anthropic's messages carry stop_reason and stop_sequence always, null
// when unset; Ollama's converter leaves them out. Ollama reports a stop
// sequence and the end of the turn alike ("stop"), so stop_sequence is
// always null.

// messagesResponse is an Anthropic message as Anthropic sends it.
type messagesResponse struct {
	anthropic.MessagesResponse
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
}

func toMessage(m anthropic.MessagesResponse) messagesResponse {
	return messagesResponse{MessagesResponse: m, StopReason: nonEmpty(m.StopReason)}
}

func nonEmpty(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

type messageStartEvent struct {
	Type    string           `json:"type"`
	Message messagesResponse `json:"message"`
}

type messageDelta struct {
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
}

type messageDeltaEvent struct {
	Type  string               `json:"type"`
	Delta messageDelta         `json:"delta"`
	Usage anthropic.DeltaUsage `json:"usage"`
}

// anthropicStream converts a streamed chat to Anthropic's events.
// message_start must give input_tokens before Ollama has counted the
// prompt (it does so with its last message), so it gives the
// converter's estimate; message_delta repeats it, so that a client reads
// one figure for the stream.
type anthropicStream struct {
	conv        *anthropic.StreamConverter
	inputTokens int
}

func (a *anthropicStream) process(r api.ChatResponse) []namedEvent {
	evs := asEvents(a.conv.Process(r))
	for i := range evs {
		evs[i].Data = a.rewrite(evs[i].Data)
	}
	return evs
}

func (a *anthropicStream) rewrite(data any) any {
	switch e := data.(type) {
	case anthropic.MessageStartEvent:
		a.inputTokens = e.Message.Usage.InputTokens
		return messageStartEvent{Type: e.Type, Message: toMessage(e.Message)}
	case anthropic.MessageDeltaEvent:
		e.Usage.InputTokens = a.inputTokens
		return messageDeltaEvent{Type: e.Type, Delta: messageDelta{StopReason: nonEmpty(e.Delta.StopReason)}, Usage: e.Usage}
	}
	return data
}
