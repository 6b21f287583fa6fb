package agent

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/stormguard/stormguard/internal/clientlist"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/serve"
	"github.com/stormguard/stormguard/internal/source"
)

// Attribution policy (docs/design.md, "Attribution"). Socket dumps cost
// Valkey nothing (the kernel answers), but each walks the established hash,
// so they are bounded in rate, time and size.
const (
	// attribRefEvery is how often a calm target's sockets are dumped as the
	// reference the first surge dump is diffed against: connections opened
	// within this window before a surge count as new.
	attribRefEvery = 10 * time.Second
	// attribMinGap caps dumps during surge/storm at 2/s (and at one per
	// interval when the interval is longer).
	attribMinGap = 500 * time.Millisecond
	// attribLimit stops a dump after this many sockets.
	attribLimit = 20000
	// attribTopK is how many IPs and prefixes are kept.
	attribTopK = detect.DefaultTopK
)

// peerSource is what the attributor needs from the signal set (tests give
// it a fake).
type peerSource interface {
	Peers(ctx context.Context, limit int) (source.PeerDump, error)
}

// attributor owns one target's socket-dump attribution. It is used from the
// target's sampler goroutine only.
type attributor struct {
	src      peerSource
	log      *slog.Logger
	minGap   time.Duration
	refEvery time.Duration
	timeout  time.Duration
	limit    int

	tracker source.PeerTracker
	last    time.Time // last dump attempt
	prev    detect.State
	episode time.Time // when the target last left calm
	report  *detect.SourceAttribution
	failing bool
}

func newAttributor(src peerSource, interval time.Duration, log *slog.Logger) *attributor {
	return &attributor{
		src: src, log: log,
		minGap:   max(interval, attribMinGap),
		refEvery: attribRefEvery,
		// The dump runs in the sampler's callback: keep it to a
		// quarter of the interval (20–250 ms).
		timeout: min(max(interval/4, 20*time.Millisecond), 250*time.Millisecond),
		limit:   attribLimit,
	}
}

// step dumps the port's sockets when due: while the target is not calm at
// most once per minGap, building a new report; while calm once per
// refEvery, only as the reference for the next diff. Leaving calm always
// dumps at once, so the state-change event carries sources of this episode
// (the detector's quiet periods bound how often that happens). It reports
// whether a new report was made.
func (a *attributor) step(ctx context.Context, st detect.State, now time.Time) bool {
	gap := a.refEvery
	if st != detect.Calm {
		gap = a.minGap
	}
	leaving := a.prev == detect.Calm && st != detect.Calm
	a.prev = st
	if leaving {
		a.episode = now
	}
	if !leaving && !a.last.IsZero() && now.Sub(a.last) < gap {
		return false
	}
	a.last = now
	dctx, cancel := context.WithTimeout(ctx, a.timeout)
	d, err := a.src.Peers(dctx, a.limit)
	cancel()
	if err != nil {
		// The next diff would span an unknown gap: start over.
		a.tracker.Reset()
		if !a.failing {
			a.log.Debug("socket dump for attribution failed", "err", err)
		}
		a.failing = true
		return false
	}
	a.failing = false
	if d.Time.IsZero() {
		d.Time = now
	}
	n := a.tracker.Next(d)
	if st == detect.Calm {
		return false
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
	if r.Total == 0 && a.report != nil && a.report.Total > 0 && !a.report.Time.Before(a.episode) {
		return false
	}
	a.report = r
	return true
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
