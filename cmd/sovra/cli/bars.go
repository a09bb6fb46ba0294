package cli

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/sovra/sovra/client"
)

// barScale is a bar's total: a replica's progress in thousandths.
const barScale = 1000

// bars redraws a line per replica on a terminal: node, state, a bar,
// and while pulling the percent, bytes and speed.
type bars struct {
	p     *mpb.Progress
	lines map[string]*barLine
	speed speeds
	once  sync.Once
}

// barLine is one replica's bar and the text its decorators show; the
// decorators run on the bar's own goroutine, hence the atomics.
type barLine struct {
	bar          *mpb.Bar
	state, extra atomic.Pointer[string]
}

func newBars(w io.Writer) *bars {
	return &bars{
		p:     mpb.New(mpb.WithOutput(w), mpb.WithWidth(32), mpb.WithRefreshRate(120*time.Millisecond)),
		lines: map[string]*barLine{},
	}
}

// update is called by the watch's goroutine only.
func (b *bars) update(d *client.Deployment) {
	present := map[string]bool{}
	for _, p := range d.Placements {
		present[p.Node] = true
		l := b.lines[p.Node]
		if l == nil {
			l = b.add(p.Node)
		}
		rate := b.speed.observe(p)
		state, extra := p.State, barExtra(p, rate)
		l.state.Store(&state)
		l.extra.Store(&extra)
		if !l.bar.Completed() {
			l.bar.SetCurrent(barProgress(p))
		}
	}
	for node, l := range b.lines {
		if !present[node] {
			l.bar.Abort(true)
			delete(b.lines, node)
		}
	}
}

// add makes the bar of a new replica.
func (b *bars) add(node string) *barLine {
	l := &barLine{}
	pending, none := client.PlacementPending, ""
	l.state.Store(&pending)
	l.extra.Store(&none)
	text := func(v *atomic.Pointer[string]) decor.Decorator {
		return decor.Any(func(decor.Statistics) string { return *v.Load() }, decor.WCSyncSpaceR)
	}
	l.bar = b.p.New(barScale, mpb.BarStyle(),
		mpb.PrependDecorators(decor.Name(printable(node), decor.WCSyncSpaceR), text(&l.state)),
		mpb.AppendDecorators(text(&l.extra)))
	b.lines[node] = l
	return l
}

// barProgress is where a replica's bar stands: a pull by its percent,
// loading just short of the end, ready at the end.
func barProgress(p client.Placement) int64 {
	switch p.State {
	case client.PlacementReady:
		return barScale
	case client.PlacementLoading:
		return barScale - 1
	case client.PlacementPulling:
		if p.ProgressPercent != nil {
			return min(int64(*p.ProgressPercent*barScale/100), barScale-2)
		}
	}
	return 0
}

// barExtra is the text after a replica's bar.
func barExtra(p client.Placement, rate float64) string {
	switch {
	case p.State == client.PlacementPulling && p.ProgressPercent != nil:
		s := fmt.Sprintf("%3.0f%%", *p.ProgressPercent)
		if p.BytesTotal > 0 {
			s += fmt.Sprintf("  %s / %s", bytesText(uint64(p.BytesDone)), bytesText(uint64(p.BytesTotal)))
		}
		if rate > 0 {
			s += fmt.Sprintf("  %s/s", bytesText(uint64(rate)))
		}
		return s
	case p.Reason != "":
		return printable(p.Reason)
	}
	return ""
}

// close ends the drawing: the last frame stays on the terminal.
func (b *bars) close() {
	b.once.Do(func() {
		for _, l := range b.lines {
			if !l.bar.Completed() {
				l.bar.Abort(false)
			}
		}
		b.p.Wait()
	})
}
