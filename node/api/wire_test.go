package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	wire "github.com/sovra/sovra/client"
	"github.com/sovra/sovra/cluster"
	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/router"
	"github.com/sovra/sovra/scheduler"
)

// TestClientWireTypes keeps the client's wire types and the server's
// answers the same: every field of each server type, set, decodes into
// the client's type without an unknown field, and every field of the
// client's type, set, decodes into the server's.
func TestClientWireTypes(t *testing.T) {
	explain := struct {
		scheduler.Explanation
		Text string `json:"text"`
	}{}
	for _, tc := range []struct {
		name           string
		server, client any
	}{
		{"cluster status", &cluster.Status{}, &wire.ClusterStatus{}},
		{"node", &state.Node{}, &wire.Node{}},
		{"node view", &nodeView{}, &wire.NodeView{}},
		{"join request", &cluster.JoinRequest{}, &wire.JoinRequest{}},
		{"replica view", &router.ReplicaView{}, &wire.ReplicaView{}},
		{"explanation", &explain, &wire.Explanation{}},
		{"catalog entry", &catalogEntry{}, &wire.CatalogEntry{}},
		{"model request", &modelRequest{}, &struct {
			wire.ModelSpec
			Replace bool `json:"replace"`
		}{}},
		{"key", &keyAnswer{}, &wire.Key{}},
		{"audit entry", &state.AuditEntry{}, &wire.AuditEntry{}},
		{"audit break", &state.AuditBreak{}, &wire.AuditBreak{}},
		{"audit anchor", &state.AuditAnchor{}, &wire.AuditLink{}},
		{"usage row", &usageRow{}, &wire.UsageRow{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sameFields(t, tc.server, tc.client)
			sameFields(t, tc.client, tc.server)
		})
	}
}

// TestDeploymentViewCopiesEveryField checks that the admin view of a
// deployment shows every field the replicated state holds, with its value.
func TestDeploymentViewCopiesEveryField(t *testing.T) {
	var dep state.Deployment
	fill(reflect.ValueOf(&dep).Elem())
	var fromState, fromView map[string]any
	b, _ := json.Marshal(dep)
	if err := json.Unmarshal(b, &fromState); err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(newDeploymentView(dep))
	if err := json.Unmarshal(b, &fromView); err != nil {
		t.Fatal(err)
	}
	for k, v := range fromState {
		if !reflect.DeepEqual(fromView[k], v) {
			t.Errorf("field %s: state %v, view %v", k, v, fromView[k])
		}
	}
}

// TestClientRequestTypes checks that what the client sends the server
// decodes strictly (the key routes refuse unknown fields).
func TestClientRequestTypes(t *testing.T) {
	for _, tc := range []struct {
		name           string
		client, server any
	}{
		{"deployment request", &wire.DeploymentRequest{}, &deploymentRequest{}},
		{"key request", &wire.KeyRequest{}, &keyRequest{}},
	} {
		t.Run(tc.name, func(t *testing.T) { sameFields(t, tc.client, tc.server) })
	}
}

// sameFields fills every field of from, encodes it and decodes it into
// a new value of to's type, refusing unknown fields.
func sameFields(t *testing.T, from, to any) {
	t.Helper()
	v := reflect.ValueOf(from).Elem()
	fill(v)
	b, err := json.Marshal(v.Interface())
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	out := reflect.New(reflect.TypeOf(to).Elem())
	if err := dec.Decode(out.Interface()); err != nil {
		t.Fatalf("%T into %T: %v\n%s", from, to, err, b)
	}
}

// fill sets every settable field of v to a value that is not zero.
func fill(v reflect.Value) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[time.Time]() {
			v.Set(reflect.ValueOf(time.UnixMilli(1)))
			return
		}
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() && !strings.HasPrefix(f.Tag.Get("json"), "-") {
				fill(v.Field(i))
			}
		}
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem())
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 { // json.RawMessage
			v.SetBytes([]byte(`"1s"`))
			return
		}
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fill(v.Index(0))
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fill(k)
		fill(e)
		v.SetMapIndex(k, e)
	case reflect.String:
		v.SetString("x")
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(1)
	}
}
