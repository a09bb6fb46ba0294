package api

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync/atomic"
)

// idSource makes unique, short ids cheaply: a random prefix per process and a
// counter.
type idSource struct {
	prefix string
	n      atomic.Uint64
}

func newIDSource() *idSource {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return &idSource{prefix: hex.EncodeToString(b)}
}

// next returns prefix + a unique suffix, for example
// "chatcmpl-3fa2c1d09e7b1a". The prefixes are the upstream APIs' own:
// "chatcmpl-", "cmpl-" and "call_" (OpenAI), "resp_" and "msg_" (the
// Responses API), "msg_" (Anthropic).
func (s *idSource) next(prefix string) string {
	var buf [48]byte
	b := append(append(buf[:0], prefix...), s.prefix...)
	return string(strconv.AppendUint(b, s.n.Add(1), 36)) // one allocation
}
