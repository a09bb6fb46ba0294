package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/sovra/sovra/cluster/state"
	"github.com/sovra/sovra/node/auth"
	"github.com/sovra/sovra/node/router"
)

// Bounds of a key's fields.
const (
	maxKeyName     = 256
	maxKeyList     = 64
	maxKeyLifetime = 10 * 365 * 24 * time.Hour
	maxGrace       = 30 * 24 * time.Hour
	defaultGrace   = time.Hour
)

// keyRoutes serve /admin/v1/keys over the cluster: the secret is made
// here, shown once in the answer, and only its keyed hash is written.
type keyRoutes struct {
	cl  Cluster
	h   *auth.Hasher
	now func() time.Time
}

func (s *Server) keyRoutes(a fiber.Router, cl Cluster) {
	k := keyRoutes{cl: cl, h: s.cfg.KeyHasher, now: s.now}
	a.Post("/keys", k.create)
	a.Get("/keys", k.list)
	a.Get("/keys/:id", k.get)
	a.Patch("/keys/:id", k.update)
	a.Delete("/keys/:id", k.remove)
	a.Post("/keys/:id/rotate", k.rotate)
}

// keyRequest is the body of POST and PATCH /admin/v1/keys.
type keyRequest struct {
	Name          *string            `json:"name"`
	Role          *string            `json:"role"`
	Models        *[]string          `json:"models"`
	Jurisdictions *[]string          `json:"jurisdictions"`
	ExpiresIn     json.RawMessage    `json:"expires_in"`
	Limits        *state.Limits      `json:"limits"`
	Labels        *map[string]string `json:"labels"`
}

// keyAnswer is a key as shown, with its secret when just made.
type keyAnswer struct {
	state.KeyView
	Secret string `json:"secret,omitempty"`
}

func (k keyRoutes) create(c *fiber.Ctx) error {
	if k.h == nil {
		return errNoKeys
	}
	var req keyRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	if req.Role == nil {
		role := state.RoleInference
		req.Role = &role
	}
	now := k.now()
	upd, err := req.check(now)
	if err != nil {
		return err
	}
	id, secret, prefix, err := auth.NewKey()
	if err != nil {
		return err
	}
	key := state.APIKey{ID: id, Role: *upd.Role, Hash: k.h.Hash(secret), Prefix: prefix, Created: now.UnixMilli()}
	setPtr(&key.Name, upd.Name)
	setPtr(&key.Models, upd.Models)
	setPtr(&key.Jurisdictions, upd.Jurisdictions)
	setPtr(&key.Limits, upd.Limits)
	setPtr(&key.Labels, upd.Labels)
	setPtr(&key.Expires, upd.Expires)
	out, err := k.apply(c, "create-key", state.Command{Type: state.TypePutAPIKey, Body: state.PutAPIKey{Key: key}})
	if err != nil {
		return err
	}
	if out.Replayed {
		// The key was made by the first call; its secret was shown then
		// and is kept nowhere: this one's was never written.
		return answerKey(c, http.StatusOK, out, "")
	}
	return answerKey(c, http.StatusCreated, out, secret)
}

// apply commits a key command under the request's idempotency key, so
// that a retried call does not apply it twice: the retry gets the first
// call's outcome, marked as replayed.
func (k keyRoutes) apply(c *fiber.Ctx, op string, cmd state.Command) (state.Outcome, error) {
	key, err := idempotencyKey(c, op)
	if err != nil {
		return state.Outcome{}, err
	}
	cmd.Key = key
	out, err := k.cl.Apply(c.UserContext(), cmd)
	if err == nil {
		markReplayed(c, out)
	}
	return out, err
}

func setPtr[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func answerKey(c *fiber.Ctx, status int, out state.Outcome, secret string) error {
	var v state.KeyView
	if err := json.Unmarshal(out.Value, &v); err != nil {
		return err
	}
	return c.Status(status).JSON(keyAnswer{KeyView: v, Secret: secret})
}

func (k keyRoutes) list(c *fiber.Ctx) error {
	keys := []state.KeyView{}
	err := k.cl.Read(c.UserContext(), c.QueryBool("stale"), func(s *state.State) {
		for _, key := range s.KeyList() {
			keys = append(keys, key.View())
		}
	})
	if err != nil {
		return err
	}
	return c.JSON(fiber.Map{"keys": keys})
}

func (k keyRoutes) get(c *fiber.Ctx) error {
	id := c.Params("id")
	var (
		v  state.KeyView
		ok bool
	)
	err := k.cl.Read(c.UserContext(), c.QueryBool("stale"), func(s *state.State) {
		if key := s.APIKeys[id]; key != nil {
			v, ok = key.View(), true
		}
	})
	if err != nil {
		return err
	}
	if !ok {
		return keyNotFound(id)
	}
	return c.JSON(v)
}

func keyNotFound(id string) *Error {
	return &Error{Status: http.StatusNotFound, Type: typeInvalid, Code: "not_found", Param: "id", Message: "no key " + cut(id)}
}

func (k keyRoutes) update(c *fiber.Ctx) error {
	var req keyRequest
	if err := decodeStrict(c, &req); err != nil {
		return err
	}
	upd, err := req.check(k.now())
	if err != nil {
		return err
	}
	upd.ID, upd.Time = c.Params("id"), k.now().UnixMilli()
	if upd == (state.UpdateAPIKey{ID: upd.ID, Time: upd.Time}) {
		return invalidParam("", "nothing to change: set name, role, models, jurisdictions, expires_in, limits or labels")
	}
	out, err := k.apply(c, "update-key/"+upd.ID, state.Command{Type: state.TypeUpdateAPIKey, Body: upd})
	if err != nil {
		return err
	}
	return answerKey(c, http.StatusOK, out, "")
}

func (k keyRoutes) remove(c *fiber.Ctx) error {
	id := c.Params("id")
	if _, err := k.apply(c, "delete-key/"+id, state.Command{Type: state.TypeDeleteAPIKey, Body: state.DeleteAPIKey{ID: id}}); err != nil {
		return err
	}
	return c.JSON(fiber.Map{"revoked": id})
}

func (k keyRoutes) rotate(c *fiber.Ctx) error {
	if k.h == nil {
		return errNoKeys
	}
	var req struct {
		Grace json.RawMessage `json:"grace"`
	}
	if len(bytes.TrimSpace(c.Body())) > 0 {
		if err := decodeStrict(c, &req); err != nil {
			return err
		}
	}
	grace := defaultGrace
	if len(req.Grace) > 0 {
		d, err := parseSpan(req.Grace, "grace", 0, maxGrace)
		if err != nil {
			return err
		}
		grace = d
	}
	_, secret, prefix, err := auth.NewKey()
	if err != nil {
		return err
	}
	now := k.now()
	body := state.RotateAPIKey{ID: c.Params("id"), Hash: k.h.Hash(secret), Prefix: prefix, Time: now.UnixMilli()}
	if grace > 0 {
		body.GraceUntil = now.Add(grace).UnixMilli()
	}
	out, err := k.apply(c, "rotate-key/"+body.ID, state.Command{Type: state.TypeRotateAPIKey, Body: body})
	if err != nil {
		return err
	}
	if out.Replayed {
		secret = "" // the first call's secret is the one written
	}
	return answerKey(c, http.StatusOK, out, secret)
}

// check validates a key request and turns it into the fields to set.
func (r keyRequest) check(now time.Time) (state.UpdateAPIKey, error) {
	var u state.UpdateAPIKey
	if r.Name != nil && len(*r.Name) > maxKeyName {
		return u, invalidParam("name", "name: at most %d bytes", maxKeyName)
	}
	if r.Role != nil && *r.Role != state.RoleAdmin && *r.Role != state.RoleInference {
		return u, invalidParam("role", "role: admin or inference")
	}
	u.Name, u.Role, u.Limits, u.Labels = r.Name, r.Role, r.Limits, r.Labels
	if r.Models != nil {
		ms, err := checkModels(*r.Models)
		if err != nil {
			return u, err
		}
		u.Models = &ms
	}
	if r.Jurisdictions != nil {
		js, err := checkJurisdictions(*r.Jurisdictions)
		if err != nil {
			return u, err
		}
		u.Jurisdictions = &js
	}
	if r.Limits != nil && (r.Limits.RequestsPerMinute < 0 || r.Limits.TokensPerMinute < 0 || r.Limits.Concurrent < 0 ||
		r.Limits.TokensPerDay < 0 || r.Limits.TokensPerMonth < 0) {
		return u, invalidParam("limits", "limits must not be negative")
	}
	if r.Labels != nil {
		if err := checkKeyLabels(*r.Labels); err != nil {
			return u, err
		}
	}
	if len(r.ExpiresIn) > 0 {
		d, err := parseSpan(r.ExpiresIn, "expires_in", 0, maxKeyLifetime)
		if err != nil {
			return u, err
		}
		var exp int64 // 0: never
		if d > 0 {
			exp = now.Add(d).UnixMilli()
		}
		u.Expires = &exp
	}
	return u, nil
}

func checkModels(in []string) ([]string, error) {
	if len(in) > maxKeyList {
		return nil, invalidParam("models", "models: at most %d", maxKeyList)
	}
	out := make([]string, 0, len(in))
	for _, m := range in {
		m = strings.ToLower(strings.TrimSpace(m))
		if _, err := path.Match(m, ""); err != nil || m == "" || len(m) > maxKeyName {
			return nil, invalidParam("models", "models: %q is not a deployment name or pattern (path.Match syntax)", cut(m))
		}
		out = append(out, m)
	}
	return out, nil
}

func checkJurisdictions(in []string) ([]string, error) {
	if len(in) > maxKeyList {
		return nil, invalidParam("jurisdictions", "jurisdictions: at most %d", maxKeyList)
	}
	js, err := router.ParseJurisdictions(strings.Join(in, ","))
	if err != nil || len(js) != len(in) {
		return nil, invalidParam("jurisdictions", "jurisdictions: letters, digits, '-' or '_', none empty")
	}
	return js, nil
}

func checkKeyLabels(labels map[string]string) error {
	if len(labels) > maxKeyList {
		return invalidParam("labels", "labels: at most %d", maxKeyList)
	}
	for k, v := range labels {
		if k == "" || len(k) > maxLabelKeyLen || len(v) > maxLabelValueLen {
			return invalidParam("labels", "label keys have 1 to %d bytes, values at most %d", maxLabelKeyLen, maxLabelValueLen)
		}
	}
	return nil
}

// parseSpan reads a duration: a string ("720h", "30d", "90m") or a
// number of seconds, within [lo, hi].
func parseSpan(raw json.RawMessage, param string, lo, hi time.Duration) (time.Duration, error) {
	bad := invalidParam(param, "%s: want a duration such as \"720h\" or \"30d\", or seconds, from %v to %v", param, lo, hi)
	var d time.Duration
	var s string
	var n json.Number
	switch {
	case json.Unmarshal(raw, &s) == nil:
		var err error
		if days, ok := strings.CutSuffix(s, "d"); ok {
			var x float64
			x, err = strconv.ParseFloat(days, 64)
			// Checked before the conversion, whose result for NaN or
			// out of range differs between platforms.
			if err == nil && !(x*24*3600 >= lo.Seconds() && x*24*3600 <= hi.Seconds()) {
				return 0, bad
			}
			d = time.Duration(x * float64(24*time.Hour))
		} else {
			d, err = time.ParseDuration(s)
		}
		if err != nil {
			return 0, bad
		}
	case json.Unmarshal(raw, &n) == nil:
		x, err := n.Float64()
		if err != nil || x < lo.Seconds() || x > hi.Seconds() {
			return 0, bad
		}
		d = time.Duration(x * float64(time.Second))
	default:
		return 0, bad
	}
	if d < lo || d > hi {
		return 0, bad
	}
	return d, nil
}

// decodeStrict is decodeBody refusing unknown fields: a misspelt
// restriction must not silently widen a key.
func decodeStrict(c *fiber.Ctx, v any) error {
	if err := decodeBody(c, new(json.RawMessage)); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(c.Body()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, c.Body(), v, true)
	}
	return nil
}
