//go:build linux

package main

import (
	"compress/gzip"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/agent"
	"github.com/stormguard/stormguard/internal/corpus"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/journal"
	"github.com/stormguard/stormguard/internal/replay"
	"github.com/stormguard/stormguard/internal/sample"
	"github.com/stormguard/stormguard/internal/sandbox"
	"github.com/stormguard/stormguard/internal/serve"
	"github.com/stormguard/stormguard/internal/source"
)

// shape is one scenario.
type shape struct {
	name, kind, desc string
	opts             sandbox.Options
	// tls: Valkey serves TLS only (RSA-2048 server key, clients present
	// no certificate); every connection of the shape, the agent's
	// included, speaks TLS.
	tls bool
	// run drives the traffic and the agent; it must call r.startAgent.
	run func(ctx context.Context, r *run) error
}

func find(name string) *shape {
	for i := range shapes {
		if shapes[i].name == name {
			return &shapes[i]
		}
	}
	return nil
}

// run is one recording in progress.
type run struct {
	sb     *sandbox.Sandbox
	target source.Target
	t0     time.Time   // when the agent first started
	tls    *tls.Config // the clients' TLS settings (shape.tls)
	// refusedUntil: the clients were still failing to connect until
	// then (set by storm shapes that count their clients' failures).
	refusedUntil time.Time

	mu      sync.Mutex
	zw      *gzip.Writer
	enc     *json.Encoder
	n       int
	err     error
	notes   []string
	agentWG sync.WaitGroup
	stopAg  context.CancelFunc

	traffic sync.WaitGroup // every traffic goroutine
}

func (r *run) note(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, a...))
}

func (r *run) write(l journal.Line) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = r.enc.Encode(l)
	}
}

// startAgent runs the real agent on the target with the watch defaults.
func (r *run) startAgent(ctx context.Context) error {
	hub := serve.NewHub(source.Names(), 6000, 1000)
	ag, err := agent.New(agent.Options{Targets: []source.Target{r.target}, Interval: 500 * time.Millisecond,
		Version: "corpus-recorder", Hub: hub,
		OnSample: func(s *sample.Sample, _ detect.State) {
			r.write(journal.Line{Kind: "sample", Target: s.Target, Time: s.Time, Sample: s})
			r.mu.Lock()
			r.n++
			r.mu.Unlock()
		}})
	if err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	actx, cancel := context.WithCancel(ctx)
	r.stopAg = cancel
	if r.t0.IsZero() {
		r.t0 = time.Now()
	}
	r.agentWG.Add(1)
	go func() {
		defer r.agentWG.Done()
		_ = ag.Run(actx)
	}()
	return nil
}

// stopAgent stops the agent and waits for it.
func (r *run) stopAgent() {
	if r.stopAg != nil {
		r.stopAg()
		r.agentWG.Wait()
		r.stopAg = nil
	}
}

// restartAgent stops the agent and starts a new one after gap, marking the
// point in the recording so replay starts a fresh detector there.
func (r *run) restartAgent(ctx context.Context, gap time.Duration) error {
	r.stopAgent()
	sleep(ctx, gap)
	r.write(journal.Line{Kind: replay.KindRestart, Target: r.target.Name(), Time: time.Now()})
	return r.startAgent(ctx)
}

// at sleeps until d after the agent first started.
func (r *run) at(ctx context.Context, d time.Duration) {
	sleep(ctx, time.Until(r.t0.Add(d)))
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func record(ctx context.Context, dir string, s shape) error {
	var clientTLS *tls.Config
	var caFile string
	if s.tls {
		cdir, err := os.MkdirTemp("", "stormguard-corpus-tls-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(cdir)
		certs, err := sandbox.MakeCertsRSA(cdir, 2048, "127.0.0.1")
		if err != nil {
			return err
		}
		pem, err := os.ReadFile(certs.CA)
		if err != nil {
			return err
		}
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		clientTLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: "127.0.0.1"}
		caFile = certs.CA
		port := s.opts.Port
		if port == 0 {
			port = 6379
		}
		// TLS only: the plain port is switched off after the sandbox's
		// own --port (the last setting wins).
		s.opts.ValkeyArgs = append(append([]string{"--port", "0"}, certs.ValkeyArgs(port, "no")...), s.opts.ValkeyArgs...)
		s.opts.ClientTLS = clientTLS
	}
	sb, err := sandbox.New(ctx, s.opts)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer sb.Close()
	a, err := addr.Parse(sb.Addr())
	if err != nil {
		return err
	}
	if s.tls {
		a.TLS, a.TLSFiles.CACert = true, caFile
	}
	tmp := filepath.Join(dir, s.name+".jsonl.gz.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	zw, _ := gzip.NewWriterLevel(f, gzip.BestCompression)
	r := &run{sb: sb, target: source.Target{Addr: a, NetNS: sb.NetNS}, zw: zw, enc: json.NewEncoder(zw), tls: clientTLS}
	r.write(journal.Line{Kind: "capture", Target: r.target.Name(), Time: time.Now()})

	// The shape's own bound: no shape runs longer than 3 minutes.
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	runErr := s.run(sctx, r)
	cancel()
	r.stopAgent()
	r.traffic.Wait()
	r.write(journal.Line{Kind: "end", Target: r.target.Name(), Time: time.Now()})
	if runErr != nil {
		f.Close()
		return runErr
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if r.err != nil {
		return fmt.Errorf("write recording: %w", r.err)
	}
	rec, err := replay.ReadCapture(tmp)
	if err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	l := corpus.Label{Name: s.name, Kind: s.kind, Shape: s.name, Description: s.desc, Samples: rec.Samples(),
		Seconds: rec.Span().Seconds(), Recorded: time.Now().UTC().Truncate(time.Second),
		Command: "go run ./internal/corpus/record -only " + s.name}
	l.FirstDrop, l.FirstDropAfter, l.DropCounter, l.Dropped = corpus.Drops(rec)
	if s.kind == corpus.Storm {
		if l.FirstDrop == nil {
			return fmt.Errorf("storm shape recorded no dropped or refused connection: not a storm, not saved")
		}
		l.SlowBuild = corpus.SlowBuild(rec, *l.FirstDrop)
	} else if l.FirstDrop != nil {
		r.note("the kernel or Valkey counted %v dropped/refused connections during this benign shape (first %s at +%.1fs)",
			l.Dropped, l.DropCounter, l.FirstDrop.Sub(rec.Records[0].Time).Seconds())
	}
	if n, of := valkeyUnreadable(rec); n*10 >= of && n > 0 {
		r.note("Valkey's counters unreadable in %d of %d samples (the agent's own connection did not get through)", n, of)
	}
	if rate := meanNewConnRate(rec); rate >= 0 {
		r.note("mean new-connection rate (valkey total_connections_received) %.0f/s", rate)
	}
	if !r.refusedUntil.IsZero() {
		t := r.refusedUntil.UTC()
		l.RefusedUntil = &t
	}
	l.Notes = strings.Join(r.notes, "; ")
	final := filepath.Join(dir, s.name+".jsonl.gz")
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	lb, _ := json.MarshalIndent(l, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, s.name+".label.json"), append(lb, '\n'), 0o644); err != nil {
		return err
	}
	st, _ := os.Stat(final)
	log.Printf("   %s: %d samples over %.1fs, %d KB, first drop %v (%s), dropped %v, slow build %v; %s",
		s.name, l.Samples, l.Seconds, st.Size()/1024, fmtT(l.FirstDrop, rec), l.DropCounter, l.Dropped, l.SlowBuild, l.Notes)
	return nil
}

func fmtT(t *time.Time, rec *replay.Recording) string {
	if t == nil {
		return "none"
	}
	return fmt.Sprintf("+%.2fs", t.Sub(rec.Records[0].Time).Seconds())
}

// valkeyUnreadable counts the samples without Valkey's accept counter.
func valkeyUnreadable(rec *replay.Recording) (n, of int) {
	for _, x := range rec.Records {
		if x.Sample == nil {
			continue
		}
		of++
		if x.Sample.Valkey == nil || x.Sample.Valkey.TotalConnectionsReceived == nil {
			n++
		}
	}
	return n, of
}

// meanNewConnRate over the recording from Valkey's own counter (resets
// skipped), -1 when unknown.
func meanNewConnRate(rec *replay.Recording) float64 {
	var sum float64
	var span time.Duration
	var prev uint64
	var prevT time.Time
	for _, x := range rec.Records {
		if x.Sample == nil || x.Sample.Valkey == nil || x.Sample.Valkey.TotalConnectionsReceived == nil {
			continue
		}
		v := *x.Sample.Valkey.TotalConnectionsReceived
		if !prevT.IsZero() && v >= prev && x.Time.Sub(prevT) < 5*time.Second {
			sum += float64(v - prev)
			span += x.Time.Sub(prevT)
		}
		prev, prevT = v, x.Time
	}
	if span <= 0 {
		return -1
	}
	return sum / span.Seconds()
}

// relabel recomputes the derived fields of an existing recording's label
// (first drop, drop totals, slow build, sample count, span) from the
// recording itself, keeping what only the recording run knew (notes, when).
// For a changed derivation rule: no re-recording needed.
func relabel(dir string, s shape) error {
	base := filepath.Join(dir, s.name)
	b, err := os.ReadFile(base + ".label.json")
	if err != nil {
		return err
	}
	var l corpus.Label
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("%s.label.json: %w", base, err)
	}
	rec, err := replay.ReadCapture(base + ".jsonl.gz")
	if err != nil {
		return err
	}
	l.Samples, l.Seconds = rec.Samples(), rec.Span().Seconds()
	l.FirstDrop, l.FirstDropAfter, l.DropCounter, l.Dropped = corpus.Drops(rec)
	l.SlowBuild = l.Kind == corpus.Storm && l.FirstDrop != nil && corpus.SlowBuild(rec, *l.FirstDrop)
	lb, _ := json.MarshalIndent(l, "", "  ")
	log.Printf("   %s: first drop %v (%s), slow build %v", s.name, fmtT(l.FirstDrop, rec), l.DropCounter, l.SlowBuild)
	return os.WriteFile(base+".label.json", append(lb, '\n'), 0o644)
}
