package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/sovra/sovra/client"
	"github.com/sovra/sovra/node/agent"
)

// pollEvery is how often a watch reads the deployment.
const pollEvery = 250 * time.Millisecond

// figuresGrace is how long a watch waits for the figures of a model no
// node has said it holds.
const figuresGrace = 3 * time.Second

// watchOptions are the flags of the commands that watch a deployment
// settle.
type watchOptions struct {
	detach  bool
	timeout time.Duration
}

func (o *watchOptions) bind(c *cobra.Command) {
	c.Flags().BoolVar(&o.detach, "detach", false, "return once the change is accepted, without watching it")
	c.Flags().DurationVar(&o.timeout, "timeout", 15*time.Minute, "how long to watch before giving up (exit code 3)")
}

// afterChange shows a deployment the cluster accepted: at once with
// --detach, else once it is ready or has failed, watched on the way.
func (g *globals) afterChange(ctx context.Context, cl *client.Client, d *client.Deployment, o watchOptions) error {
	if o.detach {
		if g.structured() {
			return g.print(d, nil)
		}
		fmt.Fprintf(g.io.Out, "deployment %s accepted: %d replica(s) wanted; `sovra deployment show %s` follows it\n", d.Name, d.Replicas, d.Name)
		return nil
	}
	final, err := g.watch(ctx, cl, d.Name, o.timeout)
	if final != nil && g.structured() {
		if perr := g.print(final, nil); perr != nil {
			return perr
		}
	}
	return err
}

// watch polls the deployment until it is ready, has failed or the time
// is up, drawing each replica's progress: redrawn bars on a terminal, a
// line per change elsewhere (nothing on stdout for JSON and YAML).
func (g *globals) watch(ctx context.Context, cl *client.Client, name string, timeout time.Duration) (*client.Deployment, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	v := g.newView()
	defer v.close()
	var last *client.Deployment
	for {
		d, err := cl.Deployment(ctx, name)
		switch {
		case err == nil:
			last = d
			v.update(d)
			if done, ferr := verdict(d); done && !g.figuresComing(ctx, cl, d, time.Since(start)) {
				v.close()
				if ferr == nil {
					g.readyLine(d, time.Since(start))
				}
				return d, ferr
			}
		case errors.Is(err, client.ErrNotFound):
			return nil, fmt.Errorf("deployment %s was deleted while being watched", name)
		case ctx.Err() == nil && !transient(err):
			return last, err
		}
		select {
		case <-ctx.Done():
			v.close()
			return last, g.timedOut(ctx, name, last, timeout)
		case <-time.After(pollEvery):
		}
	}
}

// figuresComing reports whether a deployment refused for want of its
// model's figures will get them: a node's Ollama has the model, and that
// node registers its figures shortly. In the first seconds of a watch
// it is given the benefit of the doubt: a node that has just started may
// not have said yet which models it has.
func (g *globals) figuresComing(ctx context.Context, cl *client.Client, d *client.Deployment, watched time.Duration) bool {
	if d.Status != client.StatusInvalid || !strings.Contains(d.Reason, "figures unknown") {
		return false
	}
	if watched < figuresGrace {
		return true
	}
	nodes, err := cl.Nodes(client.Stale(ctx))
	if err != nil {
		return false
	}
	want := agent.ModelKey(d.Model)
	for _, n := range nodes {
		for _, m := range n.Models {
			if agent.ModelKey(m) == want {
				return true
			}
		}
	}
	return false
}

// transient errors are worth another poll: no leader for a moment, a
// node restarting.
func transient(err error) bool {
	return errors.Is(err, client.ErrUnavailable) || errors.Is(err, client.ErrNoLeader) || isTimeout(err)
}

func (g *globals) timedOut(ctx context.Context, name string, last *client.Deployment, timeout time.Duration) error {
	if ctx.Err() != context.DeadlineExceeded {
		return ctx.Err() // interrupted
	}
	msg := fmt.Sprintf("deployment %s was not ready within %v", name, timeout)
	if last != nil {
		msg += fmt.Sprintf(" (%s ready, status %s%s)", readyText(*last), orDash(last.Status), reasonSuffix(last.Reason))
	}
	return notReady("%s: `sovra deployment explain %s` says why; it goes on in the background", msg, name)
}

// verdict says whether a watch is over, and with what error: nil once
// every wanted replica is ready and the scheduler has nothing left to do.
func verdict(d *client.Deployment) (bool, error) {
	switch d.Status {
	case client.StatusUnplaceable, client.StatusInvalid:
		return true, notReady("deployment %s could not be placed: %s\n`sovra deployment explain %s` shows each node's verdict", d.Name, orDash(d.Reason), d.Name)
	}
	if !d.Settled {
		return false, nil
	}
	if d.Status == client.StatusPartial {
		return true, notReady("deployment %s could place only %d of %d replicas: %s\n`sovra deployment explain %s` shows why", d.Name, len(d.Placements), d.Replicas, orDash(d.Reason), d.Name)
	}
	var failed []string
	for _, p := range d.Placements {
		if p.State == client.PlacementFailed {
			failed = append(failed, p.Node+": "+orDash(p.Reason))
		}
	}
	if len(failed) > 0 && d.ReadyReplicas+len(failed) >= len(d.Placements) {
		return true, notReady("deployment %s failed on %s", d.Name, strings.Join(failed, "; "))
	}
	return d.ReadyReplicas == d.Replicas && len(d.Placements) == d.Replicas, nil
}

func reasonSuffix(r string) string {
	if r == "" {
		return ""
	}
	return ": " + r
}

// readyLine is the watch's last line.
func (g *globals) readyLine(d *client.Deployment, took time.Duration) {
	if g.structured() {
		return
	}
	on := placementNodes(*d)
	if on != "" {
		on = " on " + on
	}
	fmt.Fprintf(g.io.Out, "deployment %s ready: %s replicas%s (%s)\n", d.Name, readyText(*d), on, took.Round(100*time.Millisecond))
}

// view draws the progress of a watch.
type view interface {
	update(d *client.Deployment)
	close()
}

func (g *globals) newView() view {
	switch {
	case g.structured():
		return nopView{}
	case isTerminal(g.io.Out):
		return newBars(g.io.Out)
	}
	return &lineView{w: g.io.Out, seen: map[string]replicaLine{}}
}

type nopView struct{}

func (nopView) update(*client.Deployment) {}
func (nopView) close()                    {}

// lineView prints a line each time a replica changes state, or its pull
// passes another quarter.
type lineView struct {
	w      io.Writer
	status string
	seen   map[string]replicaLine
	speed  speeds
}

type replicaLine struct {
	state   string
	quarter int
}

func (l *lineView) update(d *client.Deployment) {
	if d.Status != l.status && d.Status != "" {
		l.status = d.Status
		fmt.Fprintf(l.w, "%s deployment %s: %s%s\n", clock(), d.Name, d.Status, reasonSuffix(d.Reason))
	}
	for _, p := range d.Placements {
		cur := replicaLine{state: p.State, quarter: quarter(p)}
		rate := l.speed.observe(p)
		if prev, ok := l.seen[p.Node]; ok && prev == cur {
			continue
		}
		l.seen[p.Node] = cur
		fmt.Fprintf(l.w, "%s replica on %s: %s\n", clock(), p.Node, replicaText(p, rate))
	}
}

func (l *lineView) close() {}

func clock() string { return time.Now().Format("15:04:05") }

func quarter(p client.Placement) int {
	if p.State != client.PlacementPulling || p.ProgressPercent == nil {
		return -1
	}
	return int(*p.ProgressPercent / 25)
}

// replicaText is a replica's state for people: pulling with percent,
// bytes and speed; the reason of a failure.
func replicaText(p client.Placement, rate float64) string {
	s := p.State
	switch {
	case p.State == client.PlacementPulling && p.ProgressPercent != nil:
		s += fmt.Sprintf(" %3.0f%%", *p.ProgressPercent)
		if p.BytesTotal > 0 {
			s += fmt.Sprintf("  %s / %s", bytesText(uint64(p.BytesDone)), bytesText(uint64(p.BytesTotal)))
		}
		if rate > 0 {
			s += fmt.Sprintf("  %s/s", bytesText(uint64(rate)))
		}
	case p.Reason != "":
		s += " (" + p.Reason + ")"
	}
	if p.Action != "" && p.Action != "keep" {
		s += " [" + p.Action + "]"
	}
	return s
}

// speeds estimates each replica's pull speed from the bytes seen between
// polls.
type speeds map[string]speedSample

type speedSample struct {
	at    time.Time
	bytes int64
	rate  float64
}

func (s *speeds) observe(p client.Placement) float64 {
	if *s == nil {
		*s = speeds{}
	}
	now := time.Now()
	prev, ok := (*s)[p.Node]
	cur := speedSample{at: now, bytes: p.BytesDone, rate: prev.rate}
	if !ok || p.BytesDone < prev.bytes {
		cur.rate = 0
	} else if dt := now.Sub(prev.at).Seconds(); p.BytesDone > prev.bytes && dt > 0 {
		r := float64(p.BytesDone-prev.bytes) / dt
		if prev.rate > 0 {
			r = 0.5*r + 0.5*prev.rate
		}
		cur.rate = r
	} else {
		cur.at, cur.bytes = prev.at, prev.bytes
	}
	(*s)[p.Node] = cur
	return cur.rate
}
