package state

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/sovra/sovra/models"
)

// tinySpec is a small valid dense model called name.
func tinySpec(name string) ModelSpec {
	return ModelSpec{
		Name: name, Architecture: "llama", Parameters: 1_000_000, FileSize: 4_000_000,
		Layers: 2, Embedding: 64, Heads: 4, KVHeads: 2, HeadDimK: 16, HeadDimV: 16, ContextLength: 2048,
	}
}

// filledSpec is a valid model with every field set.
func filledSpec(name string) ModelSpec {
	return ModelSpec{
		Name: name, Family: "fam", Architecture: "deepseek2", BaseModel: "base",
		Parameters: 16_000_000_000, ActiveParameters: 2_000_000_000, Experts: 64, ExpertsUsed: 6,
		Quantization: "Q4_K_M", FileSize: 9_000_000_000,
		Layers: 27, Embedding: 2048, Heads: 16, KVHeads: 16, HeadDimK: 192, HeadDimV: 128, KVLatentDim: 576,
		Vocab: 102400, TiedEmbeddings: true, ContextLength: 163840, License: "mit", Source: "operator",
		CreatedIndex: 1, ModifiedIndex: 2,
	}
}

func TestModelSpecConvertsEveryFigure(t *testing.T) {
	// Every figure survives the trip through models.Model; only the
	// registry's own indexes are left behind.
	want := filledSpec("m:1b")
	if zero := zeroPaths("ModelSpec", reflect.ValueOf(want)); len(zero) > 0 {
		t.Fatalf("filledSpec leaves zero: %v", zero)
	}
	got := SpecOf(want.Model())
	got.CreatedIndex, got.ModifiedIndex = want.CreatedIndex, want.ModifiedIndex
	if got != want {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, want)
	}
	// And the other way: every field of models.Model but the aliases
	// has a home in the spec.
	m := filled[models.Model]()
	m.Aliases = nil
	back := SpecOf(m).Model()
	if !reflect.DeepEqual(back, m) {
		t.Fatalf("models.Model round trip\n got %+v\nwant %+v", back, m)
	}
}

func TestRegisterModel(t *testing.T) {
	bad := func(change func(*ModelSpec)) ModelSpec {
		m := tinySpec("x:1b")
		change(&m)
		return m
	}
	cases := []struct {
		name     string
		cmd      RegisterModel
		code     string
		says     string // in the error message
		wantName string // key the model is filed under
	}{
		{name: "new", cmd: RegisterModel{Model: tinySpec("tiny")}, wantName: "tiny:latest"},
		{name: "name in any form", cmd: RegisterModel{Model: tinySpec("registry.ollama.ai/library/Tiny:Q4")}, wantName: "tiny:q4"},
		{name: "namespace kept", cmd: RegisterModel{Model: tinySpec("Acme/Coder:7b")}, wantName: "acme/coder:7b"},
		{name: "replace", cmd: RegisterModel{Model: tinySpec("seed:1b")}, wantName: "seed:1b"},
		{name: "create over an existing one", cmd: RegisterModel{Model: tinySpec("Seed:1b"), Create: true}, code: "exists", says: "seed:1b"},
		{name: "empty name", cmd: RegisterModel{Model: tinySpec("")}, code: "invalid", says: "empty"},
		{name: "name Ollama refuses", cmd: RegisterModel{Model: tinySpec("a b")}, code: "invalid", says: "invalid model name"},
		{name: "no layers", cmd: RegisterModel{Model: bad(func(m *ModelSpec) { m.Layers = 0 })}, code: "invalid", says: "layers 0 must be positive"},
		{name: "KV heads", cmd: RegisterModel{Model: bad(func(m *ModelSpec) { m.KVHeads = 3 })}, code: "invalid", says: "KV heads 3 do not divide"},
		{name: "no architecture", cmd: RegisterModel{Model: bad(func(m *ModelSpec) { m.Architecture = "" })}, code: "invalid", says: "no architecture"},
		{name: "no weight size", cmd: RegisterModel{Model: bad(func(m *ModelSpec) { m.FileSize, m.Quantization = 0, "Q9" })}, code: "invalid", says: "no file size"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			a.ok(TypeRegisterModel, RegisterModel{Model: tinySpec("seed:1b")})
			before := withoutIndex(t, a.s)
			index := a.next
			out := a.do(TypeRegisterModel, tc.cmd)
			if tc.code != "" {
				if out.ErrCode != tc.code || !strings.Contains(out.ErrMsg, tc.says) {
					t.Fatalf("outcome %s %q, want %s saying %q", out.ErrCode, out.ErrMsg, tc.code, tc.says)
				}
				if got := withoutIndex(t, a.s); string(got) != string(before) {
					t.Fatal("a refused registration changed the state")
				}
				return
			}
			if out.ErrCode != "" {
				t.Fatalf("outcome %s: %s", out.ErrCode, out.ErrMsg)
			}
			got := decodeValue[ModelSpec](t, out)
			if got.Name != tc.wantName || got.ModifiedIndex != index {
				t.Fatalf("registered %+v, want name %q at index %d", got, tc.wantName, index)
			}
			stored := a.s.Models[tc.wantName]
			if stored == nil || *stored != got {
				t.Fatalf("stored %+v, outcome %+v", stored, got)
			}
			if tc.wantName == "seed:1b" && got.CreatedIndex != 1 {
				t.Fatalf("a replaced model keeps its creation index: %d", got.CreatedIndex)
			}
			if a.s.RegisteredModel(tc.cmd.Model.Name) != stored {
				t.Fatalf("RegisteredModel(%q) does not find it", tc.cmd.Model.Name)
			}
			mustInvariants(t, a.s)
		})
	}
}

func TestUnregisterModel(t *testing.T) {
	cases := []struct {
		name string
		arg  string
		code string
	}{
		{name: "key form", arg: "tiny:latest"},
		{name: "bare family", arg: "Tiny"},
		{name: "long form", arg: "registry.ollama.ai/library/tiny:latest"},
		{name: "not registered", arg: "other", code: "not_found"},
		{name: "bad name", arg: "", code: "invalid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newApplier(t)
			a.ok(TypeRegisterModel, RegisterModel{Model: tinySpec("tiny")})
			a.deployment("d")
			out := a.do(TypeUnregisterModel, UnregisterModel{Name: tc.arg})
			if out.ErrCode != tc.code {
				t.Fatalf("outcome %s %q, want %q", out.ErrCode, out.ErrMsg, tc.code)
			}
			if gone := a.s.Models["tiny:latest"] == nil; gone != (tc.code == "") {
				t.Fatalf("model gone: %v", gone)
			}
			if a.s.Deployments["d"] == nil {
				t.Fatal("unregistering a model removed a deployment")
			}
			mustInvariants(t, a.s)
		})
	}
}

func TestRegisterModelOutcomeErr(t *testing.T) {
	a := newApplier(t)
	out := a.do(TypeRegisterModel, RegisterModel{Model: ModelSpec{Name: "x"}})
	if !errors.Is(out.Err(), ErrInvalid) {
		t.Fatalf("err %v, want ErrInvalid", out.Err())
	}
}

func TestDecodeRejectsBadModels(t *testing.T) {
	spec := `{"name":"tiny:latest","architecture":"llama","parameters":1000000,"file_size":4000000,"layers":2,"embedding":64,"heads":4,"kv_heads":2,"head_dim_k":16,"head_dim_v":16,"context_length":2048}`
	st := func(body string) string { return `{"version":1,"state":{` + body + `}}` }
	cases := []struct {
		name string
		in   string
	}{
		{name: "null model", in: st(`"models":{"tiny:latest":null}`)},
		{name: "model under another key", in: st(`"models":{"other:latest":` + spec + `}`)},
		{name: "name not in key form", in: st(`"models":{"Tiny":` + strings.Replace(spec, `"tiny:latest"`, `"Tiny"`, 1) + `}`)},
		{name: "figures that do not hold", in: st(`"models":{"tiny:latest":` + strings.Replace(spec, `"kv_heads":2`, `"kv_heads":3`, 1) + `}`)},
		{name: "models a list", in: st(`"models":[]`)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := Decode(strings.NewReader(tc.in)); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Decode = %v, %v; want ErrCorrupt", s, err)
			}
		})
	}
	s, err := Decode(strings.NewReader(st(`"models":{"tiny:latest":` + spec + `}`)))
	if err != nil {
		t.Fatal(err)
	}
	if m := s.RegisteredModel("tiny"); m == nil || m.Layers != 2 {
		t.Fatalf("decoded model %+v", m)
	}
}
