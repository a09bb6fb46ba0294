package tinymodel

import (
	"bytes"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/ollama/ollama/tokenizer"
)

var testScript = []string{"<think>", "Thinking hard.", "</think>", "Done, with spaces!"}

// tensorData returns the values build gives each tensor, by name.
func tensorData(t *testing.T, o Options) map[string][]float32 {
	t.Helper()
	o = o.withDefaults()
	if err := o.validate(); err != nil {
		t.Fatal(err)
	}
	_, ts := build(o)
	out := map[string][]float32{}
	for _, ts := range ts {
		out[ts.Name] = ts.WriterTo.(f32s)
	}
	return out
}

// logits computes what a model whose blocks add nothing to the residual
// stream predicts after token id: the output projection of the
// RMS-normalised embedding.
func logits(data map[string][]float32, width, id int) []float64 {
	e := data["token_embd.weight"][id*width : (id+1)*width]
	var ss float64
	for _, v := range e {
		ss += float64(v) * float64(v)
	}
	inv := 1 / math.Sqrt(ss/float64(width)+1e-5)
	out := data["output.weight"]
	l := make([]float64, len(out)/width)
	for tok := range l {
		row := out[tok*width : (tok+1)*width]
		for d, v := range row {
			l[tok] += float64(v) * float64(e[d]) * inv
		}
	}
	return l
}

func TestScriptVocabulary(t *testing.T) {
	base, _, _ := Vocabulary()
	tokens, scores, types := Options{}.Vocabulary()
	if !slices.Equal(tokens, base) {
		t.Error("a model without a script has a vocabulary other than the base one")
	}
	tokens, scores, types = Options{Script: testScript}.Vocabulary()
	if len(tokens) != len(base)+1+len(testScript) || len(scores) != len(tokens) || len(types) != len(tokens) {
		t.Fatalf("scripted vocabulary: %d tokens, %d scores, %d types", len(tokens), len(scores), len(types))
	}
	if tokens[len(base)] != DefaultScriptStart || types[len(base)] != tokenControl {
		t.Errorf("start marker %q of type %d, want %q control", tokens[len(base)], types[len(base)], DefaultScriptStart)
	}
	for i, piece := range testScript {
		if id := len(base) + 1 + i; tokens[id] != piece || types[id] != tokenUserDefined {
			t.Errorf("piece %d: token %q type %d, want %q user-defined", i, tokens[id], types[id], piece)
		}
	}
	tokens, _, _ = Options{Script: testScript, ScriptStart: "<go>"}.Vocabulary()
	if tokens[len(base)] != "<go>" {
		t.Errorf("start marker %q, want <go>", tokens[len(base)])
	}

	var buf bytes.Buffer
	if err := Write(&buf, Options{Script: testScript}); err != nil {
		t.Fatal(err)
	}
	kv := decode(t, buf.Bytes()).KV()
	if got := kv.Strings("tokenizer.ggml.tokens"); !slices.Equal(got[len(got)-len(testScript):], testScript) {
		t.Errorf("file vocabulary ends with %q", got[len(got)-len(testScript):])
	}
	if got := kv.Uint("vocab_size"); int(got) != len(base)+1+len(testScript) {
		t.Errorf("llama.vocab_size = %d", got)
	}
}

// TestScriptLogits checks the weights: the blocks add nothing, and after
// the marker and each piece exactly one token, the next piece or </s>, has
// a non-zero logit, ScriptLogit.
func TestScriptLogits(t *testing.T) {
	for _, o := range []Options{
		{Script: testScript},
		{Script: testScript, Seed: 9, Layers: 3, Width: 32, Heads: 2, KVHeads: 1},
		{Script: []string{"only"}},
	} {
		o = o.withDefaults()
		data := tensorData(t, o)
		for name, d := range data {
			if strings.HasSuffix(name, "attn_output.weight") || strings.HasSuffix(name, "ffn_down.weight") {
				if slices.ContainsFunc(d, func(v float32) bool { return v != 0 }) {
					t.Errorf("%s has non-zero weights", name)
				}
			}
		}
		start := VocabularySize()
		for k := range len(o.Script) + 1 {
			want := start + k + 1
			if k == len(o.Script) {
				want = EOSID
			}
			for tok, l := range logits(data, o.Width, start+k) {
				switch {
				case tok == want && math.Abs(l-ScriptLogit) > 1e-3:
					t.Errorf("width %d: logit of the successor %d of chain token %d = %v, want %v", o.Width, want, k, l, ScriptLogit)
				case tok != want && l != 0:
					t.Errorf("width %d: after chain token %d, token %d has logit %v, want 0", o.Width, k, tok, l)
				}
			}
		}
		// Other tokens never lead into the script.
		for _, id := range []int{BOSID, firstByteToken + 'a', start - 1} {
			l := logits(data, o.Width, id)
			for tok := start; tok < len(l); tok++ {
				if l[tok] != 0 {
					t.Errorf("after token %d, chain token %d has logit %v", id, tok, l[tok])
				}
			}
		}
	}
}

// TestScriptLeavesRestAlone checks that a script changes only the tensors
// it has to: the norms and the attention and gate inputs stay as the seed
// made them.
func TestScriptLeavesRestAlone(t *testing.T) {
	plain, scripted := tensorData(t, Options{Seed: 4}), tensorData(t, Options{Seed: 4, Script: testScript})
	for name, d := range plain {
		switch {
		case name == "token_embd.weight", name == "output.weight",
			strings.HasSuffix(name, "attn_output.weight"), strings.HasSuffix(name, "ffn_down.weight"):
			continue
		}
		if !slices.Equal(d, scripted[name]) {
			t.Errorf("tensor %s differs in the scripted model", name)
		}
	}
}

// TestScriptTokenizes checks with Ollama's SentencePiece tokenizer that a
// prompt ending with the marker, or with a piece, ends with that token, and
// that the pieces decode to their text. (The server runs llama models on
// its llama.cpp runner, whose tokenizer also splits control and
// user-defined tokens out first; the real-server tests in ollamarig cover
// that one.)
func TestScriptTokenizes(t *testing.T) {
	o := Options{Script: testScript}
	tokens, scores, types := o.Vocabulary()
	spm := tokenizer.NewSentencePiece(&tokenizer.Vocabulary{
		Values: tokens, Scores: scores, Types: types,
		BOS: []int32{BOSID}, EOS: []int32{EOSID}, AddBOS: true,
	})
	start := int32(VocabularySize())
	for prompt, want := range map[string]int32{
		"<|user|>Hello there, <think> and Done!\n" + DefaultScriptStart: start,
		"<|user|>hi\n" + DefaultScriptStart + "<think></think>":         start + 3,
		DefaultScriptStart + DefaultScriptStart:                         start,
		"<|user|>Done, with spaces":                                     -1,
	} {
		ids, err := spm.Encode(prompt, true)
		if err != nil {
			t.Fatal(err)
		}
		last := ids[len(ids)-1]
		if want >= 0 && last != want || want < 0 && last >= start {
			t.Errorf("%q ends with token %d (%q), want %d", prompt, last, tokens[last], want)
		}
	}
	for i, piece := range testScript {
		if got, err := spm.Decode([]int32{start + 1 + int32(i)}); err != nil || got != piece {
			t.Errorf("piece %d decodes to %q, %v; want %q", i, got, err, piece)
		}
	}
}

func TestInvalidScripts(t *testing.T) {
	long := make([]string, 32) // with the marker, 33 chain tokens > 64/2
	for i := range long {
		long[i] = strings.Repeat("x", i+2)
	}
	for name, o := range map[string]Options{
		"empty piece":        {Script: []string{"a piece", ""}},
		"repeated piece":     {Script: []string{"<a>", "<b>", "<a>"}},
		"base token":         {Script: []string{"<c>", "a"}},
		"special token":      {Script: []string{"</s>"}},
		"piece is the start": {Script: []string{DefaultScriptStart}},
		"start is a byte":    {Script: []string{"x1"}, ScriptStart: "<0x41>"},
		"start alone":        {ScriptStart: "<go>"},
		"too long":           {Script: long},
		"too narrow":         {Script: []string{"p1", "p2"}, Width: 4, Heads: 2, KVHeads: 1},
	} {
		if err := Write(&bytes.Buffer{}, o); err == nil {
			t.Errorf("%s: Write succeeded, want error", name)
		}
	}
	if err := Write(&bytes.Buffer{}, Options{Script: long[:31]}); err != nil {
		t.Errorf("31 pieces at width 64: %v", err)
	}
}
