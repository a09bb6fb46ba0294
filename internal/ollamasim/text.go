package ollamasim

import (
	"hash/fnv"
	"strconv"
	"strings"
	"unicode/utf8"
)

// vocab is the word list answers are made of.
var vocab = strings.Fields(`the a model answer token stream cluster node request response
	simple quick bright river mountain city light signal data value system queue
	fast slow green blue small large early later first second north south
	reads writes builds tests sends keeps finds shows moves holds turns opens
	and or but so then while because with from into over under near across
	clear calm steady sharp gentle plain open quiet`)

// rng is a small deterministic generator (splitmix64).
type rng struct{ s uint64 }

func (r *rng) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rng) intn(n int) int { return int(r.next() % uint64(n)) }

// float returns a value in [-1, 1).
func (r *rng) float() float64 { return float64(r.next()>>11)/(1<<52) - 1 }

// hashStrings is a stable 64-bit hash of parts.
func hashStrings(parts ...string) uint64 {
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return h.Sum64()
}

// chainHash extends a running hash with one more part.
func chainHash(prev uint64, part string) uint64 {
	return hashStrings(strconv.FormatUint(prev, 16), part)
}

// CountTokens is the simulator's tokenizer: every whitespace-separated word
// costs one token per started four bytes.
func CountTokens(s string) int {
	n := 0
	for _, w := range strings.Fields(s) {
		n += (len(w) + 3) / 4
	}
	return n
}

// sentenceTokens produces n word tokens grouped into sentences. Every
// token but the first carries its leading space, so the text is their
// concatenation.
func sentenceTokens(r *rng, n int) []string {
	toks := make([]string, 0, n)
	left := 0
	for i := range n {
		w := vocab[r.intn(len(vocab))]
		if left == 0 {
			left = 5 + r.intn(8)
			w = strings.ToUpper(w[:1]) + w[1:]
		}
		left--
		if left == 0 || i == n-1 {
			w += "."
		}
		if i > 0 {
			w = " " + w
		}
		toks = append(toks, w)
	}
	return toks
}

// phrase is a few lowercase words.
func phrase(r *rng, n int) string {
	ws := make([]string, n)
	for i := range ws {
		ws[i] = vocab[r.intn(len(vocab))]
	}
	return strings.Join(ws, " ")
}

// splitText cuts s into tokens of about four bytes, on rune boundaries.
func splitText(s string) []string {
	var toks []string
	for len(s) > 0 {
		n := 0
		for n < len(s) && n < 4 {
			_, size := utf8.DecodeRuneInString(s[n:])
			n += size
		}
		toks = append(toks, s[:n])
		s = s[n:]
	}
	return toks
}

// cut applies stop sequences and the token budget to a token list. It
// returns the tokens to send (the last one possibly shortened so that the
// text ends right before the stop sequence), the tokens spent generating
// them, and the done reason.
func cut(toks []string, stops []string, budget int) (out []string, spent int, reason string) {
	limit := len(toks)
	if budget >= 0 && budget < limit {
		limit = budget
	}
	var text strings.Builder
	for i := range limit {
		start := text.Len()
		text.WriteString(toks[i])
		if idx := firstStop(text.String(), stops); idx >= 0 {
			out = append(out, toks[:i]...)
			if idx > start {
				out = append(out, text.String()[start:idx])
			} else if idx < start {
				out = trimTo(out, idx)
			}
			return out, i + 1, "stop"
		}
	}
	if limit < len(toks) {
		return toks[:limit], limit, "length"
	}
	return toks, len(toks), "stop"
}

// firstStop is the earliest index of any stop sequence in s, or -1.
func firstStop(s string, stops []string) int {
	best := -1
	for _, st := range stops {
		if st == "" {
			continue
		}
		if i := strings.Index(s, st); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	return best
}

// trimTo shortens a token list so that its text is n bytes long.
func trimTo(toks []string, n int) []string {
	total := 0
	for i, t := range toks {
		if total+len(t) >= n {
			out := append([]string(nil), toks[:i]...)
			if n > total {
				out = append(out, t[:n-total])
			}
			return out
		}
		total += len(t)
	}
	return toks
}
