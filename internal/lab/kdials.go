package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/stormguard/stormguard/internal/netns"
	"github.com/stormguard/stormguard/internal/signal"
)

// ConnectsFromKernel says where connect_attempts and connect_failures come
// from for a strategy whose client library dials by itself (valkey-glide:
// its Rust core opens the sockets, there is no dial hook to count through).
const ConnectsFromKernel = "kernel: delta of Tcp ActiveOpens (attempts) and Tcp AttemptFails (failures) " +
	"from /proc/net/snmp of the client's network namespace, sampled every 100ms, minus the lab's admin connects"

// ConnectsFromHook is the source of the figures for every other strategy.
const ConnectsFromHook = "dial hook: every network dial of the clients goes through the lab's counting dialer"

// tcpSNMP reads the Tcp section of /proc/net/snmp of one network namespace.
// The file is opened once on a thread inside the namespace (an open
// /proc/net file stays bound to the namespace of the thread that opened
// it) and read again from the start for every sample.
type tcpSNMP struct {
	mu sync.Mutex
	f  *os.File
}

func openTCPSNMP(nsPath string) (*tcpSNMP, error) {
	var f *os.File
	err := netns.Do(nsPath, func() error {
		var err error
		f, err = os.Open("/proc/thread-self/net/snmp")
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open /proc/net/snmp of netns %s: %w", nsPath, err)
	}
	return &tcpSNMP{f: f}, nil
}

// read returns the current Tcp counters (ActiveOpens, AttemptFails, …).
func (s *tcpSNMP) read() (map[string]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil, errors.New("read /proc/net/snmp: closed")
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("read /proc/net/snmp: %w", err)
	}
	all, err := signal.ParseProcNetStats(s.f)
	if err != nil {
		return nil, fmt.Errorf("parse /proc/net/snmp: %w", err)
	}
	tcp := all["Tcp"]
	for _, k := range []string{"ActiveOpens", "AttemptFails"} {
		if _, ok := tcp[k]; !ok {
			return nil, fmt.Errorf("/proc/net/snmp has no Tcp %s", k)
		}
	}
	return tcp, nil
}

func (s *tcpSNMP) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f != nil {
		s.f.Close()
		s.f = nil
	}
}

// kernelDials feeds the recorder's dial counters and timeline from the
// kernel's Tcp ActiveOpens and AttemptFails of the clients' namespace, for
// a client library that dials by itself. ActiveOpens counts every
// connect(2) that sent a SYN; AttemptFails counts connections that died in
// SYN-SENT or SYN-RECV (a refused or timed-out connect, and on the server
// side of the same namespace an embryonic connection reset by its client).
// Every connect in the namespace counts, so the lab subtracts its own admin
// connects; anything else connecting in that namespace (another process,
// the sandbox's readiness PINGs after a restart) is counted too.
type kernelDials struct {
	snmp  *tcpSNMP
	rec   *recorder
	admin func() int64 // the admin connection's dials so far

	mu                   sync.Mutex
	opens, fails, admins int64 // last sample
	err                  error
}

func newKernelDials(snmp *tcpSNMP, rec *recorder, admin func() int64) (*kernelDials, error) {
	k := &kernelDials{snmp: snmp, rec: rec, admin: admin}
	tcp, err := snmp.read()
	if err != nil {
		return nil, err
	}
	k.opens, k.fails, k.admins = int64(tcp["ActiveOpens"]), int64(tcp["AttemptFails"]), admin()
	return k, nil
}

// sample adds the counters' growth since the last sample to the recorder,
// in the current timeline bucket.
func (k *kernelDials) sample() {
	k.mu.Lock()
	defer k.mu.Unlock()
	tcp, err := k.snmp.read()
	if err != nil {
		if k.err == nil {
			k.err = err
		}
		return
	}
	opens, fails, admins := int64(tcp["ActiveOpens"]), int64(tcp["AttemptFails"]), k.admin()
	// Counters are per namespace and only grow; a smaller value would
	// mean another namespace, which cannot happen with one open file.
	d := max(opens-k.opens, 0) - (admins - k.admins)
	k.rec.addDials(d)
	if f := fails - k.fails; f > 0 {
		k.rec.dialFails.Add(f)
	}
	k.opens, k.fails, k.admins = opens, fails, admins
}

// run samples every Bucket until ctx ends.
func (k *kernelDials) run(ctx context.Context) {
	t := time.NewTicker(Bucket)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			k.sample()
		}
	}
}

// failure is the first read error, if any (nil if every sample worked).
func (k *kernelDials) failure() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}
