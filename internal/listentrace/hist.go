package listentrace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// The accept-wait histogram's layout, as in bpf/listentrace.c: values in
// microseconds; below 1<<subBits each value has its own bucket; above,
// each power of two is split into 1<<subBits buckets (at most 6.25% wide).
const (
	subBits = 4
	sub     = 1 << subBits
	maxExp  = 28
	// NBuckets is the number of histogram buckets.
	NBuckets = sub + (maxExp-subBits)*sub
)

// Counters is one read of a watched port's maps, summed over CPUs. All
// counts are cumulative since the programs were loaded.
type Counters struct {
	// SYNs counts SYNs to the port (sk_lookup; see bpf/listentrace.c).
	SYNs uint64
	// SYNsFull counts SYNs that arrived while an accept queue of the
	// port was full: each was dropped as a listen overflow.
	SYNsFull uint64
	// Drops is the summed drop counter (sk_drops) of the port's live
	// listening sockets, counted by the kernel since each socket was
	// created; Listeners is how many that is (learned by the walk at
	// Open; 0 while the port has no listener, or until a new one, after
	// a restart, is learned by the next walk).
	Drops     uint64
	Listeners uint64
	Accepts   uint64
	WaitSumUS uint64
	// Established is the port's ESTABLISHED sockets now (a gauge kept
	// by the programs from state changes); SynRecv the half-open
	// connections in its listeners' SYN queues (see Tracer.Counts).
	Established, SynRecv uint64
	Hist                 [NBuckets]uint64
	// MaxWait is the longest accept wait since the previous Read.
	MaxWait time.Duration
}

// bucketOf returns the bucket of a wait of us microseconds; the same
// function as bucket() in the BPF program (kept for tests).
func bucketOf(us uint64) int {
	if us < sub {
		return int(us)
	}
	e := 63 - bits.LeadingZeros64(us)
	if e >= maxExp {
		return NBuckets - 1
	}
	return sub + (e-subBits)*sub + int((us>>(e-subBits))&(sub-1))
}

// BucketBounds returns bucket i's range [low, high) in microseconds; the
// last bucket's high is +Inf.
func BucketBounds(i int) (low, high float64) {
	if i < sub {
		return float64(i), float64(i + 1)
	}
	e := (i-sub)/sub + subBits
	s := (i - sub) % sub
	low = float64(uint64(sub+s) << uint(e-subBits))
	high = float64(uint64(sub+s+1) << uint(e-subBits))
	if i == NBuckets-1 {
		high = math.Inf(1)
	}
	return low, high
}

// Delta returns cur minus prev, counter by counter. A counter that went
// backwards (the programs were reloaded) restarts from cur. MaxWait is
// cur's: it is already per interval.
func Delta(prev, cur Counters) Counters {
	d := Counters{MaxWait: cur.MaxWait}
	sub := func(a, b uint64) uint64 {
		if b < a {
			return b
		}
		return b - a
	}
	d.SYNs = sub(prev.SYNs, cur.SYNs)
	d.SYNsFull = sub(prev.SYNsFull, cur.SYNsFull)
	d.Drops = sub(prev.Drops, cur.Drops)
	d.Listeners = cur.Listeners
	d.Established, d.SynRecv = cur.Established, cur.SynRecv
	d.Accepts = sub(prev.Accepts, cur.Accepts)
	d.WaitSumUS = sub(prev.WaitSumUS, cur.WaitSumUS)
	for i := range d.Hist {
		d.Hist[i] = sub(prev.Hist[i], cur.Hist[i])
	}
	return d
}

// Quantile returns the q-quantile (0 < q <= 1) of the waits in c.Hist,
// interpolating linearly inside the bucket it falls in and never above
// c.MaxWait when that is known; ok is false when the histogram is empty.
func Quantile(c Counters, q float64) (d time.Duration, ok bool) {
	var total uint64
	for _, n := range c.Hist {
		total += n
	}
	if total == 0 || q <= 0 || q > 1 || math.IsNaN(q) {
		return 0, false
	}
	rank := math.Ceil(q * float64(total))
	var cum float64
	for i, n := range c.Hist {
		if n == 0 {
			continue
		}
		if cum+float64(n) < rank {
			cum += float64(n)
			continue
		}
		low, high := BucketBounds(i)
		if math.IsInf(high, 1) {
			high = low * 2
		}
		us := low + (high-low)*(rank-cum)/float64(n)
		d = time.Duration(us * float64(time.Microsecond))
		if c.MaxWait > 0 && d > c.MaxWait {
			d = c.MaxWait
		}
		return d, true
	}
	return 0, false
}

// Event is one ring-buffer record: a watched listener overflowed.
type Event struct {
	// KernelNS is bpf_ktime_get_ns() at the drop (CLOCK_MONOTONIC).
	KernelNS uint64
	Slot     uint32
	Kind     uint32
}

// Event kinds (struct event's kind).
const (
	// EventOverflow: a SYN met a full accept queue of the port.
	EventOverflow = 1
	// EventRelearn: a connection arrived and no listener is known.
	EventRelearn = 2
)

// eventSize is sizeof(struct event).
const eventSize = 16

// errShortEvent is returned for a record shorter than struct event.
var errShortEvent = errors.New("short ring-buffer record")

// decodeEvent decodes a ring-buffer record (host byte order; the
// programs are built for little-endian hosts only).
func decodeEvent(b []byte) (Event, error) {
	if len(b) < eventSize {
		return Event{}, fmt.Errorf("decode overflow event: %w (%d bytes)", errShortEvent, len(b))
	}
	return Event{
		KernelNS: binary.LittleEndian.Uint64(b[0:8]),
		Slot:     binary.LittleEndian.Uint32(b[8:12]),
		Kind:     binary.LittleEndian.Uint32(b[12:16]),
	}, nil
}

// PromBounds are the upper bounds, in microseconds, of the Prometheus
// histogram buckets: every fourth power of two from 64 us to 16.8 s, so
// each falls on an edge of the kernel histogram and the counts are exact.
var PromBounds = []uint64{1 << 6, 1 << 8, 1 << 10, 1 << 12, 1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22, 1 << 24}

// Cumulative returns the count of waits below each of PromBounds.
func Cumulative(c Counters) []uint64 {
	out := make([]uint64, len(PromBounds))
	for i, n := range c.Hist {
		if n == 0 {
			continue
		}
		_, high := BucketBounds(i)
		for j, b := range PromBounds {
			if high <= float64(b) {
				out[j] += n
			}
		}
	}
	return out
}
