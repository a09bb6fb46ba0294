package cli

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/sovra/sovra/client"
)

// secretNotice ends the table answer that holds a secret, on stderr, so
// that it does not end up in a file the output is sent to.
const secretNotice = "store the secret now: it is never shown again"

func (g *globals) keyCmd() *cobra.Command {
	c := group(&cobra.Command{
		Use:     "key",
		Aliases: []string{"keys"},
		Short:   "Create, list, change, rotate and revoke API keys",
		Long: `API keys are the credentials of clients other than the operators. A key's
secret is shown once, by create and rotate; the cluster keeps only its hash, and
no other command (list, show, errors) ever shows it.`,
	})
	c.AddCommand(g.keyCreateCmd(), g.keyListCmd(), g.keyShowCmd(), g.keyUpdateCmd(), g.keyRotateCmd(), g.keyRevokeCmd())
	return c
}

// keyFlags are the fields of a key that create and update set.
type keyFlags struct {
	name, role, expiresIn string
	models, jurisdictions []string
	labels                []string
	limits                client.Limits
}

func (f *keyFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&f.name, "name", "", "the key's name")
	fs.StringVar(&f.role, "role", "", "inference (the default at creation: /v1 and /api only) or admin")
	fs.StringSliceVar(&f.models, "models", nil, `deployments or path.Match patterns the key may use, comma-separated ("": all)`)
	fs.StringSliceVar(&f.jurisdictions, "jurisdictions", nil, `the only node jurisdictions its requests may go to ("": any)`)
	fs.StringVar(&f.expiresIn, "expires-in", "", `lifetime from now: "720h", "30d" (0: never)`)
	fs.Int64Var(&f.limits.RequestsPerMinute, "rpm", 0, "requests per minute (0: no limit)")
	fs.Int64Var(&f.limits.TokensPerMinute, "tpm", 0, "tokens per minute (0: no limit)")
	fs.Int64Var(&f.limits.Concurrent, "concurrent", 0, "requests at once (0: no limit)")
	fs.Int64Var(&f.limits.TokensPerDay, "tokens-per-day", 0, "tokens per UTC day (0: no limit)")
	fs.Int64Var(&f.limits.TokensPerMonth, "tokens-per-month", 0, "tokens per UTC month (0: no limit)")
	fs.StringArrayVar(&f.labels, "label", nil, `a label k=v (repeat for more; they replace the key's labels; "" clears them)`)
}

// limitFlags pairs each limit flag with its field.
func limitFlags(l *client.Limits) map[string]*int64 {
	return map[string]*int64{"rpm": &l.RequestsPerMinute, "tpm": &l.TokensPerMinute, "concurrent": &l.Concurrent,
		"tokens-per-day": &l.TokensPerDay, "tokens-per-month": &l.TokensPerMonth}
}

// limitsChanged reports whether any limit flag was given.
func (f *keyFlags) limitsChanged(fs *pflag.FlagSet) bool {
	for name := range limitFlags(&f.limits) {
		if fs.Changed(name) {
			return true
		}
	}
	return false
}

// request is the KeyRequest of the flags given, and only those: base
// holds the limits the limit flags given change (the API replaces a
// key's limits as a whole).
func (f *keyFlags) request(fs *pflag.FlagSet, base client.Limits) (client.KeyRequest, error) {
	var r client.KeyRequest
	if fs.Changed("name") {
		r.Name = &f.name
	}
	if fs.Changed("role") {
		if f.role != client.RoleInference && f.role != client.RoleAdmin {
			return r, UsageError("--role %q: use inference or admin", f.role)
		}
		r.Role = &f.role
	}
	if fs.Changed("models") {
		r.Models = &f.models
	}
	if fs.Changed("jurisdictions") {
		r.Jurisdictions = &f.jurisdictions
	}
	if fs.Changed("expires-in") {
		if _, err := parseSpan(f.expiresIn); err != nil {
			return r, UsageError("--expires-in %q: %v", f.expiresIn, err)
		}
		r.ExpiresIn = f.expiresIn
	}
	if f.limitsChanged(fs) {
		l, err := f.mergeLimits(fs, base)
		if err != nil {
			return r, err
		}
		r.Limits = &l
	}
	if fs.Changed("label") {
		l, err := parseLabels(f.labels)
		if err != nil {
			return r, err
		}
		r.Labels = &l
	}
	return r, nil
}

// mergeLimits sets in base the limits whose flags were given.
func (f *keyFlags) mergeLimits(fs *pflag.FlagSet, base client.Limits) (client.Limits, error) {
	dst := limitFlags(&base)
	for name, v := range limitFlags(&f.limits) {
		if !fs.Changed(name) {
			continue
		}
		if *v < 0 {
			return base, UsageError("--%s %d: a limit is 0 (none) or more", name, *v)
		}
		*dst[name] = *v
	}
	return base, nil
}

// parseLabels reads key=value labels (of keys and nodes); a single ""
// is no labels.
func parseLabels(kvs []string) (map[string]string, error) {
	out := map[string]string{}
	if len(kvs) == 1 && kvs[0] == "" {
		return out, nil
	}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, UsageError("label %q: want key=value", kv)
		}
		if _, dup := out[k]; dup {
			return nil, UsageError("label %q is given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

// parseSpan reads a duration as the API does: Go's ("720h", "90m") or
// days ("30d"); not negative.
func parseSpan(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var x float64
		x, err = strconv.ParseFloat(days, 64)
		if err == nil && (math.IsNaN(x) || math.Abs(x) > 100_000) { // a count of days time.Duration holds
			err = errors.New("days out of range")
		}
		d = time.Duration(x * float64(24*time.Hour))
	} else {
		d, err = time.ParseDuration(s)
	}
	switch {
	case err != nil:
		return 0, errors.New(`want a duration such as "24h", "90m" or "30d"`)
	case d < 0:
		return 0, errors.New("must not be negative")
	}
	return d, nil
}

func (g *globals) keyCreateCmd() *cobra.Command {
	var f keyFlags
	c := &cobra.Command{
		Use:   "create [--name N] [--role inference|admin] [--models m1,m2] [--expires-in 30d] [--rpm N] [--label k=v]...",
		Short: "Make an API key and show its secret, once",
		Args:  noArgs,
	}
	f.bind(c.Flags())
	c.RunE = g.call(func(ctx context.Context, cl *client.Client, _ []string) error {
		req, err := f.request(c.Flags(), client.Limits{})
		if err != nil {
			return err
		}
		k, err := cl.CreateKey(g.mutation(ctx), req)
		if err != nil {
			return keyErr(err, "")
		}
		return g.printSecret(k)
	})
	return c
}

func (g *globals) keyListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the API keys (never their secrets)",
		Args:  noArgs,
		RunE: g.call(func(ctx context.Context, cl *client.Client, _ []string) error {
			keys, err := cl.Keys(ctx)
			if err != nil {
				return err
			}
			for i := range keys {
				keys[i].Secret = ""
			}
			return g.print(keys, func(t *table) { keyTable(t, keys, time.Now()) })
		}),
	}
}

func keyTable(t *table, keys []client.Key, now time.Time) {
	t.head("ID", "NAME", "ROLE", "PREFIX", "MODELS", "EXPIRES", "LAST USED", "+LIMITS", "+JURISDICTIONS", "+LABELS", "+CREATED")
	for _, k := range keys {
		t.row(k.ID, orDash(k.Name), k.Role, orDash(k.Prefix), listText(k.Models, "all"), expiresText(k.Expires, now),
			ago(k.LastUsed, now), limitsText(k.Limits), listText(k.Jurisdictions, "any"), labelsText(k.Labels), ago(k.Created, now))
	}
	if len(keys) == 0 {
		t.row("(none)")
	}
}

func (g *globals) keyShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show an API key (never its secret)",
		Args:  exactArgs(1),
		RunE: g.call(func(ctx context.Context, cl *client.Client, args []string) error {
			k, err := cl.Key(ctx, args[0])
			if err != nil {
				return keyErr(err, args[0])
			}
			k.Secret = ""
			return g.printFields(k, keyFields(k, time.Now()))
		}),
	}
}

func (g *globals) keyUpdateCmd() *cobra.Command {
	var f keyFlags
	c := &cobra.Command{
		Use:   "update ID [--name N] [--role R] [--models m1,m2] [--expires-in 30d] [--rpm N] [--label k=v]...",
		Short: "Change the fields of an API key the flags name, and only those",
		Long: `Change the fields of an API key that the flags name, and only those: --models ""
allows every model again, --jurisdictions "" every jurisdiction, --label "" drops
the labels, and a limit flag changes that limit only (0 lifts it).`,
		Args: exactArgs(1),
	}
	f.bind(c.Flags())
	c.RunE = g.call(func(ctx context.Context, cl *client.Client, args []string) error {
		req, err := g.updateRequest(ctx, cl, c.Flags(), &f, args[0])
		if err != nil {
			return err
		}
		k, err := cl.UpdateKey(g.mutation(ctx), args[0], req)
		if err != nil {
			return keyErr(err, args[0])
		}
		return g.printFields(k, keyFields(k, time.Now()))
	})
	return c
}

// updateRequest is the change the flags ask for; a limit flag needs the
// key's other limits, read first.
func (g *globals) updateRequest(ctx context.Context, cl *client.Client, fs *pflag.FlagSet, f *keyFlags, id string) (client.KeyRequest, error) {
	if !slices.ContainsFunc([]string{"name", "role", "models", "jurisdictions", "expires-in", "label"}, fs.Changed) && !f.limitsChanged(fs) {
		return client.KeyRequest{}, UsageError("nothing to change: give one or more of --name, --role, --models, --jurisdictions, --expires-in, --label or a limit flag")
	}
	var base client.Limits
	if f.limitsChanged(fs) {
		k, err := cl.Key(ctx, id)
		if err != nil {
			return client.KeyRequest{}, keyErr(err, id)
		}
		base = k.Limits
	}
	return f.request(fs, base)
}

func (g *globals) keyRotateCmd() *cobra.Command {
	var grace string
	c := &cobra.Command{
		Use:   "rotate ID [--grace 1h]",
		Short: "Give an API key a new secret, shown once; the old one works until the grace ends",
		Args:  exactArgs(1),
	}
	c.Flags().StringVar(&grace, "grace", "", `how long the old secret stays valid: "1h" (the default), "24h", "7d", up to 30d; 0: not at all`)
	c.RunE = g.call(func(ctx context.Context, cl *client.Client, args []string) error {
		d, err := graceOf(c.Flags(), grace)
		if err != nil {
			return err
		}
		k, err := cl.RotateKey(g.mutation(ctx), args[0], d)
		if err != nil {
			return keyErr(err, args[0])
		}
		return g.printSecret(k)
	})
	return c
}

// graceOf is --grace as RotateKey takes it: 0 for the server's default,
// negative for none.
func graceOf(fs *pflag.FlagSet, s string) (time.Duration, error) {
	if !fs.Changed("grace") {
		return 0, nil
	}
	d, err := parseSpan(s)
	if err != nil {
		return 0, UsageError("--grace %q: %v", s, err)
	}
	if d == 0 {
		return -1, nil
	}
	return d, nil
}

// Revoked is the answer of `sovra key revoke`.
type Revoked struct {
	Revoked string `json:"revoked"`
}

func (g *globals) keyRevokeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an API key: every node refuses it from then on",
		Args:  exactArgs(1),
		RunE: g.call(func(ctx context.Context, cl *client.Client, args []string) error {
			if err := cl.DeleteKey(g.mutation(ctx), args[0]); err != nil {
				return keyErr(err, args[0])
			}
			return g.printFields(Revoked{Revoked: args[0]}, [][2]string{{"revoked", args[0]}})
		}),
	}
}

// keyErr says what to do about a key call's failure: an unknown id
// gets the list command; an unknown outcome the general hint (rerun with
// the same idempotency key).
func keyErr(err error, id string) error {
	if errors.Is(err, client.ErrNotFound) && id != "" {
		return fmt.Errorf("no key %q: `sovra key list` lists the keys", id)
	}
	return err
}

// printSecret shows a key with its new secret: in a table answer, a
// notice on stderr that it is shown only now.
func (g *globals) printSecret(k *client.Key) error {
	if k.Secret == "" {
		// A rerun with the idempotency key of a call that was applied:
		// the secret was made, and shown, by that call only.
		fmt.Fprintln(g.io.Err, "this change was applied by an earlier run with the same idempotency key; its secret was shown then and cannot be shown again (`sovra key rotate` makes a new one)")
	}
	fields := append(keyFields(k, time.Now()), [2]string{"secret", k.Secret})
	if err := g.printFields(k, fields); err != nil || g.structured() {
		return err
	}
	_, err := fmt.Fprintln(g.io.Err, secretNotice)
	return err
}

// keyFields are a key's fields as `key show` lists them.
func keyFields(k *client.Key, now time.Time) [][2]string {
	f := [][2]string{
		{"id", k.ID}, {"name", orDash(k.Name)}, {"role", k.Role}, {"prefix", orDash(k.Prefix)},
		{"models", listText(k.Models, "all")}, {"jurisdictions", listText(k.Jurisdictions, "any")},
		{"limits", limitsText(k.Limits)}, {"labels", labelsText(k.Labels)},
		{"expires", whenText(k.Expires, now, "never")}, {"created", whenText(k.Created, now, "-")},
		{"modified", whenText(k.Modified, now, "-")}, {"last used", whenText(k.LastUsed, now, "never")},
	}
	if k.Rotated > 0 {
		f = append(f, [2]string{"rotated", whenText(k.Rotated, now, "-")})
	}
	if k.PrevPrefix != "" {
		f = append(f, [2]string{"previous secret", k.PrevPrefix + "… valid until " + whenText(k.PrevExpires, now, "-")})
	}
	return f
}

// printFields writes v as JSON or YAML, or, as a table, its fields as
// aligned "name: value" lines.
func (g *globals) printFields(v any, fields [][2]string) error {
	if g.output != "table" && g.output != "wide" {
		return g.print(v, nil)
	}
	width := 0
	for _, f := range fields {
		width = max(width, len(f[0]))
	}
	var b strings.Builder
	for _, f := range fields {
		fmt.Fprintf(&b, "%-*s  %s\n", width+1, f[0]+":", printable(f[1]))
	}
	_, err := g.io.Out.Write([]byte(b.String()))
	return err
}

func listText(l []string, none string) string {
	if len(l) == 0 {
		return none
	}
	return strings.Join(l, ",")
}

func limitsText(l client.Limits) string {
	var parts []string
	for _, p := range []struct {
		name string
		v    int64
	}{{"rpm", l.RequestsPerMinute}, {"tpm", l.TokensPerMinute}, {"concurrent", l.Concurrent},
		{"tokens/day", l.TokensPerDay}, {"tokens/month", l.TokensPerMonth}} {
		if p.v > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", p.name, p.v))
		}
	}
	return listText(parts, "none")
}

// expiresText is when a key expires, relative to now.
func expiresText(ms int64, now time.Time) string {
	switch {
	case ms <= 0:
		return "never"
	case ms <= now.UnixMilli():
		return "expired " + ago(ms, now)
	}
	return ago(ms, now)
}

// whenText is a Unix-millisecond time in UTC, with how long ago.
func whenText(ms int64, now time.Time, none string) string {
	if ms <= 0 {
		return none
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339) + " (" + ago(ms, now) + ")"
}
