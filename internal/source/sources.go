package source

import (
	"context"
	"log/slog"
	"time"

	"github.com/stormguard/stormguard/internal/sample"
)

// Options configure the sources of one target.
type Options struct {
	Target Target
	// Interval is the sampling interval; sources that keep their own
	// faster pollers (the accept queue) report the interval's peak.
	Interval time.Duration
	// ListenPoll is how often the accept queue is polled between samples
	// (default 10ms = 100 Hz).
	ListenPoll time.Duration
	// Logger receives debug and warning messages; nil discards them.
	Logger *slog.Logger
	// NoEBPF turns the eBPF source off (--ebpf=false); it then reports
	// why in errors.ebpf and every other source works as before.
	NoEBPF bool
	// Version is stormguard's version, sent to Valkey as CLIENT SETINFO
	// lib-ver on the reserved connection ("" = "dev").
	Version string
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

// opener opens one source for a target. Opening must not fail for reasons
// that may pass (a server that is down, a namespace not there yet): such a
// source opens and reports unavailable per sample until it recovers.
type opener struct {
	name string
	open func(ctx context.Context, o Options) (sample.Source, error)
}

// openers is the explicit table of sources, in display order.
var openers = []opener{
	{name: "listenq", open: openListenq},
	// ebpf before valkey: the reserved connection's handshake shows the
	// programs the listening socket (docs/signals.md).
	{name: "ebpf", open: openEBPF},
	{name: "valkey", open: openValkey},
	{name: "tcp", open: openTCPStat},
	{name: "conntrack", open: openConntrack},
	{name: "nic", open: openNIC},
}

// Slow periods (sample.Slow): while a target is calm these sources are read
// at most about this often whatever the interval, and the samples in between
// carry their latest reading (source_age_ms; docs/signals.md, "Clocks").
// At the default 500 ms interval and longer every sample reads them.
const (
	// conntrackPeriod: the table's count and per-CPU statistics change
	// with the host's whole connection churn, not one target's; a storm
	// the conntrack table causes shows first in the TCP counters and the
	// accept queue, which are read every sample.
	conntrackPeriod = 500 * time.Millisecond
	// nicPeriod: ENA allowance counters are cumulative over the whole
	// interface; an ethtool statistics query costs ~0.2 ms.
	nicPeriod = 500 * time.Millisecond
	// valkeyPeriod: INFO is Valkey's work, on its main thread, and its
	// readings (clients, the rejection counter, PING's round trip) are
	// led by the kernel's: a stalled or refusing Valkey shows first in
	// the accept queue and the eBPF accept and overflow counts, read
	// every sample, which end calm or make the pace fast, and then INFO
	// is read every sample too. While calm it is read as often as at
	// the default interval: each read is a round trip through the client
	// library's goroutines (PING, then INFO), about 8 goroutine wake-ups,
	// which at 10 per second were most of the thread wake-ups left at a
	// 10 ms interval (docs/benchmarks.md, "Cost").
	valkeyPeriod = 500 * time.Millisecond
	// tcpPeriod applies only while the eBPF source counts the watched
	// listener's own overflows every sample (listen.overflows_port): the
	// namespace-wide TCP counters are then no longer the drop signal a
	// storm is first seen in (the accept queue and that count are), and
	// rendering netstat and snmp was the largest per-sample cost at a
	// 10 ms interval. Without eBPF they are read every sample.
	tcpPeriod = 500 * time.Millisecond
)

// SlowPeriod implements sample.Slow: tcpPeriod while the eBPF source
// counts this listener's overflows (see tcpPeriod), otherwise 0 (every
// sample).
func (s *TCPStat) SlowPeriod() time.Duration {
	if s.perListener != nil && s.perListener() {
		return tcpPeriod
	}
	return 0
}

// SlowPeriod implements sample.Slow.
func (*NIC) SlowPeriod() time.Duration { return nicPeriod }

// SlowPeriod implements sample.Slow.
func (*valkeySource) SlowPeriod() time.Duration { return valkeyPeriod }

// Set is the open sources of one target, and what they offer the agent
// beside the sample. Everything crossing between the sources and the
// agent's pipeline is a named value (docs/design.md, "Data flow"):
//   - Sources fill the Sample (sample.Sampler runs them);
//   - Wakes ask the sampler for a sample before the interval ends;
//   - SetDetectorCalm is the agent's Pace.Heavy going in;
//   - ClientGroups is the valkey source's last CLIENT LIST, published as an
//     immutable value;
//   - Peers is a socket dump on request, on a socket of the Set's own.
type Set struct {
	Sources []sample.Source
	// Wakes are the channels of the sources that can ask for an early
	// sample (the accept-queue poller when the queue saturates, the eBPF
	// source on the first overflow): sample.Sampler.Wakes.
	Wakes   []sample.Wake
	closers []func() error
	// peers takes Peers' dumps (nil when the port is invalid or off
	// Linux).
	peers *peerDumper
	// valkey is the valkey source, nil when it did not open.
	valkey *valkeySource
}

// waker is a source that can ask for a sample before the interval ends,
// and says what its wake-up means (sample.WakeLevel).
type waker interface {
	Wake() <-chan struct{}
	WakeLevel() sample.WakeLevel
}

// Open opens every source for o.Target. A source that cannot be opened at
// all is replaced by one that reports why on every sample.
func Open(ctx context.Context, o Options) *Set {
	set := &Set{peers: newPeerDumper(o.Target)}
	for _, op := range openers {
		src, err := op.open(ctx, o)
		if err != nil {
			o.logger().Warn("signal source unavailable", "source", op.name, "target", o.Target.Name(), "err", err)
			src = failed{name: op.name, err: Classify("open "+op.name, err)}
		}
		set.Sources = append(set.Sources, src)
		if w, ok := src.(waker); ok {
			set.Wakes = append(set.Wakes, sample.Wake{C: w.Wake(), Level: w.WakeLevel()})
		}
		if v, ok := src.(*valkeySource); ok {
			set.valkey = v
		}
		if c, ok := src.(interface{ Close() error }); ok {
			set.closers = append(set.closers, c.Close)
		}
	}
	useKernelCounts(set.Sources)
	useOverflowCount(set.Sources)
	return set
}

// kernelCountUser is a source that can take the SYN_RECV/ESTABLISHED
// counts from the eBPF programs instead of walking the socket hash.
type kernelCountUser interface {
	useKernelCounts(func() (established, synRecv uint64, err error))
}

// useKernelCounts hands the eBPF source's in-kernel counts to the
// accept-queue source when both are open.
func useKernelCounts(srcs []sample.Source) {
	var user kernelCountUser
	var eb *ebpfSource
	for _, src := range srcs {
		switch v := src.(type) {
		case kernelCountUser:
			user = v
		case *ebpfSource:
			eb = v
		}
	}
	if user != nil && eb != nil {
		user.useKernelCounts(eb.kernelCounts)
	}
}

// useOverflowCount hands the tcp source the eBPF source's word on whether
// this listener's own overflows are being counted (see TCPStat.SlowPeriod).
func useOverflowCount(srcs []sample.Source) {
	var ts *TCPStat
	var eb *ebpfSource
	for _, src := range srcs {
		switch v := src.(type) {
		case *TCPStat:
			ts = v
		case *ebpfSource:
			eb = v
		}
	}
	if ts != nil && eb != nil {
		ts.perListener = eb.countsOverflows
	}
}

// Close releases every source's sockets and files.
func (s *Set) Close() error {
	if s.peers != nil {
		s.peers.close()
	}
	var first error
	for _, c := range s.closers {
		if err := c(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// failed is a source that could not be opened.
type failed struct {
	name string
	err  error
}

func (f failed) Name() string                                  { return f.name }
func (f failed) Collect(context.Context, *sample.Sample) error { return f.err }

// Names lists every source in table order.
func Names() []string {
	out := make([]string, 0, len(openers))
	for _, op := range openers {
		out = append(out, op.name)
	}
	return out
}
