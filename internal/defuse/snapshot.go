package defuse

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
	"github.com/stormguard/stormguard/internal/procnet"
)

// ReadSnapshot takes plan's one-shot reading of the target: the TcpExt
// ListenOverflows rate over window, the port's accept queue from
// /proc/net/tcp{,6}, the backlog sysctls, conntrack fill, and Valkey's
// client counters. It is deliberately small; the agent's sampler has the
// full sources. What cannot be read is recorded in Errors.
func ReadSnapshot(ctx context.Context, ns string, a addr.Addr, window time.Duration) Snapshot {
	s := Snapshot{Port: a.Port, Errors: map[string]string{}}
	i64 := func(v int64) *int64 { return &v }
	sysctl := func(k string) *int64 {
		v, err := readSysctl(ns, k)
		if err != nil {
			return nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil
		}
		return &n
	}
	s.Somaxconn, s.SynBacklog = sysctl(sysctlSomaxconn), sysctl(sysctlSynBacklog)
	s.ConntrackCount, s.ConntrackMax = sysctl("net.netfilter.nf_conntrack_count"), sysctl("net.netfilter.nf_conntrack_max")

	if ls, err := procnet.Listeners(ns, a.Port); err != nil {
		s.Errors["listen"] = err.Error()
	} else if len(ls) == 0 {
		s.Errors["listen"] = fmt.Sprintf("no TCP listener on port %d in the namespace", a.Port)
	} else {
		// The largest queue of the port's listeners (IPv4 and IPv6).
		var depth uint64
		for _, l := range ls {
			depth = max(depth, l.Queue)
		}
		s.AcceptDepth = i64(int64(depth))
	}

	v, verr := dialValkey(ctx, a, ns)
	var info0 map[string]string
	if verr == nil {
		defer v.Close()
		info0, verr = v.Info(ctx, "clients", "stats")
	}
	nst0, nerr := readNetFile(ns, "netstat")
	start := time.Now()
	select {
	case <-ctx.Done():
	case <-time.After(window):
	}
	elapsed := time.Since(start).Seconds()
	if nerr == nil {
		nst1, err := readNetFile(ns, "netstat")
		c0, c1 := parseNetstat(nst0), parseNetstat(nst1)
		if o0, ok0 := c0["TcpExt.ListenOverflows"]; err == nil && ok0 && elapsed > 0 {
			if o1, ok1 := c1["TcpExt.ListenOverflows"]; ok1 {
				r := float64(o1-o0) / elapsed
				s.ListenOverflowsPerSec = &r
			}
		}
	} else {
		s.Errors["tcp"] = "read /proc/net/netstat: " + nerr.Error()
	}
	if verr != nil {
		s.Errors["valkey"] = verr.Error()
		return s
	}
	info1, err := v.Info(ctx, "clients", "stats")
	if err != nil {
		s.Errors["valkey"] = err.Error()
		return s
	}
	if n, ok := atoi(info1, "connected_clients"); ok {
		s.ConnectedClients = i64(n)
	}
	if n, ok := atoi(info1, "maxclients"); ok {
		s.MaxClients = i64(n)
	} else if mc, ok, err := v.ConfigGet(ctx, "maxclients"); err == nil && ok {
		if n, err := strconv.ParseInt(mc, 10, 64); err == nil {
			s.MaxClients = i64(n)
		}
	}
	if n1, ok := atoi(info1, "rejected_connections"); ok {
		s.RejectedConnections = i64(n1)
		if n0, ok := atoi(info0, "rejected_connections"); ok && elapsed > 0 {
			r := float64(n1-n0) / elapsed
			s.RejectedPerSec = &r
		}
	}
	for k, dst := range map[string]**int64{configAcceptCap: &s.AcceptCap, "tcp-backlog": &s.TCPBacklog} {
		if val, ok, err := v.ConfigGet(ctx, k); err == nil && ok {
			if n, err := strconv.ParseInt(val, 10, 64); err == nil {
				*dst = i64(n)
			}
		}
	}
	// The limit is min(tcp-backlog, somaxconn) as of Valkey's listen();
	// with today's somaxconn it is an estimate if somaxconn changed since.
	if s.TCPBacklog != nil && s.Somaxconn != nil && s.AcceptDepth != nil {
		s.AcceptLimit = i64(min(*s.TCPBacklog, *s.Somaxconn))
	}
	return s
}

// parseNetstat parses /proc/net/netstat or /proc/net/snmp: pairs of lines
// "Prefix: Name Name…" / "Prefix: value value…", keyed "Prefix.Name".
func parseNetstat(b []byte) map[string]int64 {
	out := map[string]int64{}
	st, err := procnet.ParseStats(bytes.NewReader(b))
	if err != nil {
		return out
	}
	for k, v := range st.Flat() {
		out[k] = int64(v)
	}
	return out
}
