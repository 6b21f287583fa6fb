package simulate

import (
	"testing"
	"time"
)

// TestSYNDeadlineAbandons: with the dialer's SYN deadline on (it is off
// by default), an attempt whose SYN a full accept queue dropped is
// abandoned and redialled: each abandon is one failed connect() and one
// more attempt, the fleet still recovers, and an abandoned attempt adds
// no overflow of its own (the dropped SYN was the overflow).
func TestSYNDeadlineAbandons(t *testing.T) {
	m := DefaultModel()
	m.ConnCost, m.CmdCost, m.KillCost = 122*time.Microsecond, 19*time.Microsecond, 100*time.Microsecond
	m.NoticeCost, m.DialCost, m.ClientBurst = 26800*time.Nanosecond, 10700*time.Nanosecond, 1.19
	f := Fleet{Clients: 2000, Strategy: "stormguard", Scenario: "kill", Period: 3 * time.Second, Observe: true}
	off := run(t, m, f)
	f.Dialer.SYNDeadline = time.Second
	on := run(t, m, f)
	if off.ConnectFailures != 0 || off.ConnectAttempts != int64(f.Clients) {
		t.Errorf("deadline off: %d attempts, %d failed; want %d, none", off.ConnectAttempts, off.ConnectFailures, f.Clients)
	}
	if off.ListenOverflows == 0 {
		t.Fatal("the busy server did not overflow: nothing to abandon")
	}
	if on.ConnectFailures == 0 || on.ConnectAttempts != int64(f.Clients)+on.ConnectFailures {
		t.Errorf("deadline on: %d attempts, %d abandoned; want %d + the abandons", on.ConnectAttempts, on.ConnectFailures, f.Clients)
	}
	if !on.Recovered || !off.Recovered {
		t.Errorf("recovered: on %v, off %v", on.Recovered, off.Recovered)
	}
	if on.ConnectFailures > int64(on.ListenOverflows) {
		t.Errorf("%d abandons for %d overflows: an attempt abandoned without a dropped SYN", on.ConnectFailures, on.ListenOverflows)
	}
}

// TestSyncookieLeavesNoRequest follows tcp_conn_request's order: a SYN
// that finds the SYN queue full (more requests than the accept queue's
// limit) is answered with a cookie when cookies are on, and a cookie
// leaves no request socket (the SYN queue stays as it was) and no SYN-ACK
// timer; without cookies that SYN is dropped before the accept queue is
// looked at (no overflow counted); a full accept queue drops the rest
// (LISTENOVERFLOWS).
func TestSyncookieLeavesNoRequest(t *testing.T) {
	m := DefaultModel().withDefaults()
	lim := m.acceptLimit()
	for _, c := range []struct {
		name              string
		cookies           bool
		synq, queued      int
		srv               uint8
		overflows, cookie uint64
		synackTimer       bool
	}{
		{"room", true, lim, 0, srvRequest, 0, 0, true},
		{"SYN queue full: a cookie", true, lim + 1, 0, srvCookie, 0, 1, false},
		{"SYN queue full, accept queue full", true, lim + 1, lim + 1, srvNone, 1, 0, false},
		{"SYN queue full, no cookies", false, lim + 1, 0, srvNone, 0, 0, false},
		{"both full, no cookies: dropped first for the SYN queue", false, lim + 1, lim + 1, srvNone, 0, 0, false},
	} {
		mm := m
		mm.Syncookies = c.cookies
		s := &sim{m: mm, f: Fleet{}.withDefaults(), up: true, synq: c.synq}
		for range c.queued {
			s.acceptQ = append(s.acceptQ, &sock{})
		}
		k := &sock{open: true}
		s.synArrive(k)
		timer := false
		for _, e := range s.ev {
			timer = timer || e.kind == evSynackRetx
		}
		wantQ := c.synq
		if c.srv == srvRequest {
			wantQ++
		}
		if k.srv != c.srv || s.synq != wantQ || s.res.ListenOverflows != c.overflows || s.res.SyncookiesSent != c.cookie || timer != c.synackTimer {
			t.Errorf("%s: srv %d, SYN queue %d, overflows %d, cookies %d, SYN-ACK timer %v; want %d, %d, %d, %d, %v",
				c.name, k.srv, s.synq, s.res.ListenOverflows, s.res.SyncookiesSent, timer, c.srv, wantQ, c.overflows, c.cookie, c.synackTimer)
		}
	}
}

// TestCookieACK: the ACK carrying a cookie creates the connection when
// the accept queue has room, without touching the SYN queue; at a full
// queue it is dropped and counted (tcp_v4_syn_recv_sock), and with
// tcp_abort_on_overflow too there is no reset: the cookie path has no
// request to reset, the client's data retransmits try again.
func TestCookieACK(t *testing.T) {
	m := DefaultModel().withDefaults()
	m.AbortOnOverflow = true
	for _, full := range []bool{false, true} {
		s := &sim{m: m, f: Fleet{}.withDefaults(), up: true, synq: 7, loopBusy: true}
		if full {
			for range m.acceptLimit() + 1 {
				s.acceptQ = append(s.acceptQ, &sock{})
			}
		}
		k := &sock{open: true, connected: true, srv: srvCookie}
		s.ackArrive(k)
		want, ovf := uint8(srvQueued), uint64(0)
		if full {
			want, ovf = srvCookie, 1
		}
		if k.srv != want || s.synq != 7 || s.res.ListenOverflows != ovf || s.res.FailedCommands != 0 {
			t.Errorf("accept queue full %v: srv %d, SYN queue %d, overflows %d, reset PINGs %d; want %d, 7, %d, 0",
				full, k.srv, s.synq, s.res.ListenOverflows, s.res.FailedCommands, want, ovf)
		}
	}
}

// TestKillSendsCookies: a kill storm of the lab's size with the lab's
// sysctls (somaxconn 128, tcp_syncookies 1) fills the SYN queue — final
// ACKs dropped at the full accept queue keep their requests — and the
// kernel then answers with cookies; the fleet still recovers. Without
// cookies none are sent.
func TestKillSendsCookies(t *testing.T) {
	m := DefaultModel()
	f := Fleet{Clients: 6000, Strategy: "immediate", Scenario: "kill", Period: 3 * time.Second}
	on := run(t, m, f)
	m.Syncookies = false
	off := run(t, m, f)
	if on.SyncookiesSent == 0 || !on.Recovered {
		t.Errorf("cookies on: %d sent, recovered %v; want some, recovered", on.SyncookiesSent, on.Recovered)
	}
	if off.SyncookiesSent != 0 || !off.Recovered {
		t.Errorf("cookies off: %d sent, recovered %v; want none, recovered", off.SyncookiesSent, off.Recovered)
	}
}
