package agent

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/stormguard/stormguard/internal/clientlist"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/serve"
	"github.com/stormguard/stormguard/internal/source"
)

// Attribution policy (docs/design.md, "Attribution"). Socket dumps cost
// Valkey nothing (the kernel answers), but each walks the whole established
// hash (~20–40 ms with 20,000 connections on the port), so they run in the
// background, one at a time, bounded in rate, CPU, time and size.
const (
	// attribRefEvery is the shortest spacing of the calm reference dumps
	// the first surge dump is diffed against: connections opened within
	// this window before a surge count as new.
	attribRefEvery = 10 * time.Second
	// attribRefBudget is the share of one core the calm reference dumps
	// may use on average: a reference that took cost is followed by the
	// next after cost/attribRefBudget (at least attribRefEvery, at most
	// attribRefMax). A quiet host's dump takes well under a millisecond,
	// so this matters only with many connections.
	attribRefBudget = 0.0025
	attribRefMax    = 30 * time.Second
	// attribMinGap caps dumps during surge/storm at 2/s (and at one per
	// interval when the interval is longer); attribBusyBudget spaces them
	// further when each is expensive (5% of a core at most, on average).
	attribMinGap     = 500 * time.Millisecond
	attribBusyBudget = 0.05
	// attribTimeout bounds one dump. It runs in the background, so it is
	// not tied to the interval: a calm reference completes at any
	// interval.
	attribTimeout = 2 * time.Second
	// attribLimit stops a dump after this many sockets (~70 bytes each
	// while the dump is diffed).
	attribLimit = 50000
	// attribTopK is how many IPs and prefixes are kept.
	attribTopK = detect.DefaultTopK
)

// peerSource is what the attributor needs from the signal set (tests give
// it a fake).
type peerSource interface {
	Peers(ctx context.Context, limit int) (source.PeerDump, error)
}

// attributor owns one target's socket-dump attribution. step is called
// from the target's sampler goroutine only; the dumps run in a goroutine
// of their own, one at a time, so a slow dump never costs a sample its
// deadline and is never abandoned for being slower than an interval.
type attributor struct {
	src      peerSource
	log      *slog.Logger
	minGap   time.Duration
	refEvery time.Duration
	// wait is how long a step outside calm waits for the dump it started,
	// so that a state change's event carries this episode's sources: a
	// quarter of the interval (20–250 ms). A dump that takes longer goes
	// on and its report is shown from a later sample.
	wait    time.Duration
	timeout time.Duration
	limit   int

	// The sampler goroutine's own.
	prev    detect.State
	episode time.Time // when the target last left calm
	last    time.Time // when the last dump was started

	mu sync.Mutex // guards everything below, shared with the dump goroutine
	// running is non-nil while a dump runs and is closed when it ends.
	running chan struct{}
	tracker source.PeerTracker
	next    time.Time // no dump before this (the CPU budget)
	report  *detect.SourceAttribution
	reports uint64 // how many reports were made
	failing bool
}

func newAttributor(src peerSource, interval time.Duration, log *slog.Logger) *attributor {
	return &attributor{
		src: src, log: log,
		minGap:   max(interval, attribMinGap),
		refEvery: attribRefEvery,
		wait:     min(max(interval/4, 20*time.Millisecond), 250*time.Millisecond),
		timeout:  attribTimeout,
		limit:    attribLimit,
	}
}

// step starts a dump of the port's sockets when one is due: while the
// target is not calm at most once per minGap, building a new report; while
// calm once per refEvery (or as the CPU budget allows), only as the
// reference for the next diff. Leaving calm always dumps at once, so the
// state-change event carries sources of this episode (the detector's quiet
// periods bound how often that happens). Outside calm the step waits for
// its dump up to a.wait; a calm reference is never waited for. It reports
// whether a new report was made during the step.
func (a *attributor) step(ctx context.Context, st detect.State, now time.Time) bool {
	leaving := a.prev == detect.Calm && st != detect.Calm
	a.prev = st
	if leaving {
		a.episode = now
	}
	a.mu.Lock()
	running, before, next := a.running, a.reports, a.next
	a.mu.Unlock()
	if running != nil {
		// One dump at a time. Leaving calm while a reference runs: let
		// it end (it is the reference), then dump this episode.
		if !leaving || !a.waitFor(ctx, running) {
			return false
		}
	}
	gap := a.refEvery
	if st != detect.Calm {
		gap = a.minGap
	}
	if !leaving && !a.last.IsZero() && (now.Sub(a.last) < gap || now.Before(next)) {
		return false
	}
	a.last = now
	done := make(chan struct{})
	a.mu.Lock()
	a.running = done
	a.mu.Unlock()
	go a.dump(ctx, st, now, a.episode, done)
	if st == detect.Calm {
		return false
	}
	a.waitFor(ctx, done)
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reports != before
}

// waitFor waits up to a.wait for done; it reports whether done closed.
func (a *attributor) waitFor(ctx context.Context, done chan struct{}) bool {
	t := time.NewTimer(a.wait)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}

// close waits for a running dump to end (within a.timeout), so the
// sources can be closed under it.
func (a *attributor) close() {
	a.mu.Lock()
	running := a.running
	a.mu.Unlock()
	if running != nil {
		<-running
	}
}

// dump runs one dump, diffs it against the previous one and, outside
// calm, makes a report; st, now and episode are the starting step's. Its
// cost (wall time, which a loaded machine only lengthens) spaces the next
// dump within the budget of its state.
func (a *attributor) dump(ctx context.Context, st detect.State, now, episode time.Time, done chan struct{}) {
	t0 := time.Now()
	dctx, cancel := context.WithTimeout(ctx, a.timeout)
	d, err := a.src.Peers(dctx, a.limit)
	cancel()
	a.mu.Lock()
	defer close(done)
	defer a.mu.Unlock()
	a.running = nil
	if err != nil {
		// The next diff would span an unknown gap: start over.
		a.tracker.Reset()
		if !a.failing {
			a.log.Debug("socket dump for attribution failed", "err", err)
		}
		a.failing = true
		return
	}
	a.failing = false
	if d.Time.IsZero() {
		d.Time = now
	}
	n := a.tracker.Next(d)
	budget := attribBusyBudget
	if st == detect.Calm {
		budget = attribRefBudget
	}
	a.next = now.Add(min(time.Duration(float64(time.Since(t0))/budget), attribRefMax))
	if st == detect.Calm {
		return
	}
	r := &detect.SourceAttribution{
		Time: d.Time, Basis: "new_sockets", Scanned: n.Scanned, SynRecv: n.SynRecv,
		NewEstablished: n.Established, Truncated: n.Approximate,
		Attribution: detect.Attribute(n.Addrs, attribTopK),
	}
	if n.Since.IsZero() {
		r.Basis = "syn_recv_only"
	} else {
		since := n.Since
		r.Since = &since
	}
	// A dump that finds nothing new (the burst is over, the queue is
	// drained) does not hide the sources this episode already named:
	// they stay on display with their growing age.
	if r.Total == 0 && a.report != nil && a.report.Total > 0 && !a.report.Time.Before(episode) {
		return
	}
	a.report = r
	a.reports++
}

// fresh returns the latest report if it was taken within two dump gaps of
// now (so an event never carries a previous episode's sources), else nil.
func (a *attributor) fresh(now time.Time) *detect.SourceAttribution {
	r := a.current(now)
	if r == nil || now.Sub(r.Time) > 2*a.minGap {
		return nil
	}
	return r
}

// current returns a copy of the latest report with its age at now, or nil.
func (a *attributor) current(now time.Time) *detect.SourceAttribution {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.report == nil {
		return nil
	}
	r := *a.report
	r.AgeS = max(now.Sub(r.Time).Seconds(), 0)
	return &r
}

// clientGroups returns the latest grouped CLIENT LIST the valkey source
// published, with its age and a note when it was taken before the current
// episode.
func clientGroups(pub source.ClientGroups, st detect.State, now time.Time) *serve.ClientGroups {
	snap, note := pub.Snapshot, pub.Note
	if snap == nil {
		if note == "" {
			return nil
		}
		return &serve.ClientGroups{Note: note}
	}
	g := &serve.ClientGroups{AgeS: max(now.Sub(snap.Time).Seconds(), 0), Note: note, Snapshot: snap}
	if st != detect.Calm && g.Note == "" {
		g.Note = "taken while calm, " + now.Sub(snap.Time).Round(time.Second).String() + " ago; CLIENT LIST is not sent during " + st.String() + " (see sources for the kernel-side attribution)"
	}
	return g
}

// sourcesSentence says in one sentence where the new connections come from,
// for the verdict: "New connections: 67% from 10.0.3.0/24 (top IP 10.0.3.7,
// 40%; at the last calm CLIENT LIST 18 of its 20 clients were valkey-py
// 6.1)." The library is only a hint (the storm's clients may not have been
// there when calm), so the counts are given. It is empty when the dump
// found nothing new.
func sourcesSentence(a *detect.SourceAttribution, g *serve.ClientGroups) string {
	if a == nil || a.Total == 0 || len(a.TopPrefixes) == 0 || len(a.TopIPs) == 0 {
		return ""
	}
	p, ip := a.TopPrefixes[0], a.TopIPs[0]
	var b strings.Builder
	fmt.Fprintf(&b, "New connections: %s from %s (top IP %s, %s", pct(p.Share), p.Prefix, ip.IP, pct(ip.Share))
	if g != nil && g.Snapshot != nil {
		for _, grp := range g.IPs {
			if grp.IP != ip.IP || grp.TopLibrary == "" {
				continue
			}
			if grp.TopLibrary == clientlist.Unset {
				fmt.Fprintf(&b, "; at the last calm CLIENT LIST %d of its %d clients had sent no CLIENT SETINFO", grp.TopLibraryCount, grp.Count)
			} else {
				fmt.Fprintf(&b, "; at the last calm CLIENT LIST %d of its %d clients were %s", grp.TopLibraryCount, grp.Count, grp.TopLibrary)
			}
			break
		}
	}
	b.WriteString(").")
	return b.String()
}

func pct(share float64) string { return strconv.FormatFloat(math.Round(share*100), 'f', 0, 64) + "%" }

// appendSentence joins a verdict and one more sentence.
func appendSentence(verdict, s string) string {
	switch {
	case s == "":
		return verdict
	case verdict == "":
		return s
	}
	return verdict + " " + s
}
