package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/stormguard/stormguard/internal/procnet"
)

// ConnectsFromKernel says where connect_attempts and connect_failures come
// from for a strategy whose client library dials by itself (valkey-glide:
// its Rust core opens the sockets; redis-py: a Python process), so there is
// no dial hook to count through.
const ConnectsFromKernel = "kernel: delta of Tcp ActiveOpens (attempts) and Tcp AttemptFails (failures) " +
	"from /proc/net/snmp of the clients' network namespace (with client hosts: the hosts' namespaces, summed), " +
	"sampled every 100ms, minus the lab's admin connects"

// connectsFromKernelFailover is added to ConnectsFromKernel when the
// counted namespace is also the failover scenario's servers'.
const connectsFromKernelFailover = "; it also counts the connects of the run's other servers there " +
	"(the replica's replication, the cluster nodes' bus to the killed primary): with --hosts only the clients' are counted"

// ConnectsFromHook is the source of the figures for every other strategy.
const ConnectsFromHook = "dial hook: every network dial of the clients goes through the lab's counting dialer"

// tcpSNMP reads the Tcp section of /proc/net/snmp of one or more network
// namespaces through procnet.Files: each opened once on a thread inside its
// namespace (an open /proc/net file stays bound to the namespace of the
// thread that opened it) and read again from the start for every sample.
type tcpSNMP struct {
	mu    sync.Mutex
	files []*procnet.Files // nil once closed
}

// openTCPSNMP opens the counters of the namespaces nsPaths ("" or none:
// the own namespace); read sums them.
func openTCPSNMP(nsPaths ...string) (*tcpSNMP, error) {
	if len(nsPaths) == 0 {
		nsPaths = []string{""}
	}
	s := &tcpSNMP{}
	for _, ns := range nsPaths {
		path := "/proc/net/snmp" // own namespace: opened by path on each read
		if ns != "" {
			path = "net/snmp" // relative to /proc/thread-self inside ns
		}
		f := procnet.NewFiles(ns, []string{path})
		s.files = append(s.files, f)
		// Open (and check) it now, so a missing namespace fails the
		// run before it starts.
		if _, err := f.Read(); err != nil {
			s.close()
			return nil, fmt.Errorf("open /proc/net/snmp of netns %s: %w", ns, err)
		}
	}
	return s, nil
}

// read returns the current Tcp counters (ActiveOpens, AttemptFails, …),
// summed over the namespaces.
func (s *tcpSNMP) read() (map[string]uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.files == nil {
		return nil, errors.New("read /proc/net/snmp: closed")
	}
	sum := map[string]uint64{}
	for _, f := range s.files {
		bufs, err := f.Read()
		if err != nil {
			return nil, fmt.Errorf("read /proc/net/snmp: %w", err)
		}
		all, err := procnet.ParseStats(bytes.NewReader(bufs[0]))
		if err != nil {
			return nil, fmt.Errorf("parse /proc/net/snmp: %w", err)
		}
		tcp := all["Tcp"]
		for _, k := range []string{"ActiveOpens", "AttemptFails"} {
			if _, ok := tcp[k]; !ok {
				return nil, fmt.Errorf("/proc/net/snmp has no Tcp %s", k)
			}
		}
		for k, v := range tcp {
			sum[k] += v
		}
	}
	return sum, nil
}

func (s *tcpSNMP) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, f := range s.files {
		f.Close()
	}
	s.files = nil
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

	mu sync.Mutex
	// At the start: ActiveOpens, AttemptFails, admin dials.
	opens0, fails0, admins0 int64
	// Added to the recorder so far. Dials are emitted as the running
	// total, so an admin dial counted before its SYN reached the kernel
	// cannot push one sample below zero and be lost.
	dials, fails int64
	at           time.Time // the last sample
	err          error
}

func newKernelDials(snmp *tcpSNMP, rec *recorder, admin func() int64) (*kernelDials, error) {
	k := &kernelDials{snmp: snmp, rec: rec, admin: admin}
	tcp, err := snmp.read()
	if err != nil {
		return nil, err
	}
	k.opens0, k.fails0, k.admins0 = int64(tcp["ActiveOpens"]), int64(tcp["AttemptFails"]), admin()
	k.at = time.Now()
	return k, nil
}

// sample adds the counters' growth since the last sample to the recorder,
// spread over the timeline buckets since the last sample.
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
	dials := int64(tcp["ActiveOpens"]) - k.opens0 - (k.admin() - k.admins0)
	fails := int64(tcp["AttemptFails"]) - k.fails0
	now := time.Now()
	if d := dials - k.dials; d > 0 {
		k.rec.addDialsOver(d, k.at, now)
		k.dials = dials
	}
	k.at = now
	if f := fails - k.fails; f > 0 {
		k.rec.dialFails.Add(f)
		k.fails = fails
	}
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
