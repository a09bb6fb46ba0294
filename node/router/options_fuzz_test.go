package router

import (
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"slices"
	"testing"

	"github.com/ollama/ollama/api"
)

// FuzzVetOptions checks the options of Ollama-native requests (and of
// translated ones, after a forward) as the router does. Whatever the
// options: no panic; a refusal is an *OptionError naming the option
// briefly; what is passed on holds only sampling options, which Ollama's
// api.Options reads (after the JSON trip to Ollama) into finite values.
func FuzzVetOptions(f *testing.F) {
	for _, s := range []string{
		`{"temperature":0.2,"top_p":0.9,"top_k":40,"seed":7,"stop":["\n"],"num_predict":16,"repeat_penalty":1.1,"presence_penalty":0.5,"frequency_penalty":0.5,"min_p":0.05,"typical_p":1,"repeat_last_n":64,"num_keep":4}`,
		`{"num_ctx":4096,"num_predict":-1}`, `{"num_ctx":1e9}`, `{"num_gpu":1}`, `{"flash_attention":true}`,
		`{"temperature":"hot"}`, `{"temperature":1e308}`, `{"seed":1.5}`, `{"stop":[1]}`, `{"stop":"x"}`, `{"top_k":-1e300}`,
		`{"temperature":null}`, `{}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	r := New("a", nil, nil, nil).WithConfig(Config{ServeUndeployed: true, ContextLength: 8192})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var opts map[string]any
		if json.Unmarshal(raw, &opts) != nil {
			return
		}
		out, err := r.vetOptions(opts)
		if err != nil {
			var oe *OptionError
			if !errors.As(err, &oe) || !errors.Is(err, ErrOptionRefused) || len(oe.Option) > maxNameEcho+3 || oe.Reason == "" {
				t.Fatalf("options %s: refused with %v", raw, err)
			}
			return
		}
		for k := range out {
			if !slices.Contains(SamplingOptions, k) {
				t.Fatalf("options %s: %q passed on", raw, k)
			}
		}
		sent, err := json.Marshal(out)
		if err != nil {
			t.Fatalf("options %s: what is passed on does not encode: %v", raw, err)
		}
		var back map[string]any
		if err := json.Unmarshal(sent, &back); err != nil {
			t.Fatal(err)
		}
		o := api.DefaultOptions()
		if err := o.FromMap(back); err != nil {
			t.Fatalf("options %s: Ollama refuses what is passed on: %v", raw, err)
		}
		checkFinite(t, raw, reflect.ValueOf(o))
	})
}

// checkFinite fails when a float field of v (a struct, through embedded
// ones) is not finite.
func checkFinite(t *testing.T, raw []byte, v reflect.Value) {
	t.Helper()
	for i := range v.NumField() {
		switch f := v.Field(i); f.Kind() {
		case reflect.Struct:
			checkFinite(t, raw, f)
		case reflect.Float32, reflect.Float64:
			if x := f.Float(); math.IsInf(x, 0) || math.IsNaN(x) {
				t.Fatalf("options %s: Ollama reads %s as %v", raw, v.Type().Field(i).Name, x)
			}
		}
	}
}
