package dialer

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stormguard/stormguard/backoff"
)

func TestParseInfo(t *testing.T) {
	sample, err := os.ReadFile("testdata/info_valkey801.txt") // INFO clients cpu stats, valkey-server 8.0.1
	if err != nil {
		t.Fatal(err)
	}
	// INFO server clients cpu stats, valkey-server 8.0.1 (valkey-cli, LF;
	// its executable path replaced)
	withServer, err := os.ReadFile("testdata/info_server_valkey801.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, info string
		want       ServerStats
		err        bool
	}{
		{"valkey 8.0.1", string(sample), ServerStats{Clients: 1, CPU: 2114 * time.Microsecond, Connections: 1, Uptime: -1}, false},
		{"CRLF and RESP3 prefix", "txt:# Clients\r\nconnected_clients:7\r\n# CPU\r\nused_cpu_sys_main_thread:1.5\r\nused_cpu_user_main_thread:0.25\r\n" +
			"used_cpu_sys:9\r\nused_cpu_user:9\r\ntotal_connections_received:42\r\n", ServerStats{Clients: 7, CPU: 1750 * time.Millisecond, Connections: 42, Uptime: -1}, false},
		{"process CPU without the main thread's", "used_cpu_sys:1\nused_cpu_user:2\n", ServerStats{Clients: -1, CPU: 3 * time.Second, Connections: -1, Uptime: -1}, false},
		{"main thread half missing: the process's", "used_cpu_sys:1\nused_cpu_user:2\nused_cpu_sys_main_thread:0.5\n", ServerStats{Clients: -1, CPU: 3 * time.Second, Connections: -1, Uptime: -1}, false},
		{"clients only", "connected_clients:15000\n", ServerStats{Clients: 15000, CPU: -1, Connections: -1, Uptime: -1}, false},
		{"first of a repeated key", "connected_clients:3\nconnected_clients:4\n", ServerStats{Clients: 3, CPU: -1, Connections: -1, Uptime: -1}, false},
		{"bad values are absent", "connected_clients:-3\nused_cpu_sys:NaN\nused_cpu_user:1\ntotal_connections_received:x\n", ServerStats{Clients: -1, CPU: -1, Connections: -1, Uptime: -1}, true},
		{"infinite CPU", "connected_clients:1\nused_cpu_sys:+Inf\nused_cpu_user:1\n", ServerStats{Clients: 1, CPU: -1, Connections: -1, Uptime: -1}, false},
		{"empty", "", ServerStats{Clients: -1, CPU: -1, Connections: -1, Uptime: -1}, true},
		{"with the server section", string(withServer),
			ServerStats{Clients: 1, CPU: 30142 * time.Microsecond, Connections: 2, Uptime: 3 * time.Second}, false},
		{"uptime", "connected_clients:2\nuptime_in_seconds:86400\nuptime_in_seconds:5\n", ServerStats{Clients: 2, CPU: -1, Connections: -1, Uptime: 24 * time.Hour}, false},
		{"bad uptimes are absent", "connected_clients:2\nuptime_in_seconds:-1\n", ServerStats{Clients: 2, CPU: -1, Connections: -1, Uptime: -1}, false},
		{"uptime NaN", "connected_clients:2\nuptime_in_seconds:NaN\n", ServerStats{Clients: 2, CPU: -1, Connections: -1, Uptime: -1}, false},
		{"uptime beyond a Duration", "connected_clients:2\nuptime_in_seconds:1e12\n", ServerStats{Clients: 2, CPU: -1, Connections: -1, Uptime: -1}, false},
		{"uptime alone is no reply", "uptime_in_seconds:5\n", ServerStats{Clients: -1, CPU: -1, Connections: -1, Uptime: 5 * time.Second}, true},
		{"error reply", "-NOPERM this user has no permissions to run the 'info' command", ServerStats{Clients: -1, CPU: -1, Connections: -1, Uptime: -1}, true},
	} {
		got, err := ParseInfo(tc.info)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v, error %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

// TestServerToldRate: the starting admission rate from two INFO readings,
// ServerShare × (1 − ρ) / ConnectCost within [AcceptRate/4, MaxAcceptRate],
// where ρ leaves out the CPU of the connections admitted between them.
func TestServerToldRate(t *testing.T) {
	const c = 20 * time.Microsecond // ConnectCost: 50,000/s at 100%
	for _, tc := range []struct {
		name      string
		o         Options
		span      time.Duration
		cpu       time.Duration // between the readings
		conns     int64         // admitted between them
		wantBusy  float64       // -1: not known
		wantStart float64
	}{
		{"idle server", Options{}, 10 * time.Second, 0, 0, 0, 0.2 * 50000},
		{"half busy", Options{}, 10 * time.Second, 5 * time.Second, 0, 0.5, 0.2 * 0.5 * 50000},
		{"admissions are not load", Options{}, 10 * time.Second, 2*time.Second + 50000*c, 50000, 0.2, 0.2 * 0.8 * 50000},
		{"saturated: minimum headroom, floor AcceptRate/4", Options{}, 10 * time.Second, 10 * time.Second, 0, 1, 3000.0 / 4},
		{"capped at MaxAcceptRate", Options{ServerShare: 1, MaxAcceptRate: 20000}, 10 * time.Second, 0, 0, 0, 20000},
		{"readings too close together", Options{}, 500 * time.Millisecond, 0, 0, -1, 3000},
		{"off", Options{ConnectCost: -1}, 10 * time.Second, 0, 0, -1, 3000},
	} {
		if tc.o.ConnectCost == 0 {
			tc.o.ConnectCost = c
		}
		if tc.o.ServerShare == 0 {
			tc.o.ServerShare = 0.2
		}
		d, clk := newClocked(t, tc.o)
		d.ObserveServer("s", ServerStats{Clients: 100, CPU: time.Second, Connections: 1000})
		clk.advance(tc.span)
		d.ObserveServer("s", ServerStats{Clients: 100, CPU: time.Second + tc.cpu, Connections: 1000 + tc.conns})
		st := d.Stats("s")
		if math.Abs(st.ServerBusy-tc.wantBusy) > 1e-9 || math.Abs(st.StartRate-tc.wantStart) > 1e-6 || st.AcceptRate != st.StartRate {
			t.Errorf("%s: busy %g, start %g, rate %g; want busy %g, start %g", tc.name, st.ServerBusy, st.StartRate, st.AcceptRate, tc.wantBusy, tc.wantStart)
		}
	}
}

// TestServerToldWindow: the told rate sizes the window a loss opens; a
// restarted server (counters back to 0) keeps what was learned; a target
// dialled over TLS keeps AcceptRate; congestion cuts from the told rate.
func TestServerToldWindow(t *testing.T) {
	d, clk := newClocked(t, Options{ConnectCost: 20 * time.Microsecond, ServerShare: 0.2}) // AcceptRate 3000
	d.ObserveServer("s", ServerStats{Clients: 5000, CPU: 0, Connections: 5000})
	if w := d.Stats("s").Window; w != 5000*time.Second/3000 {
		t.Errorf("one reading: window %s, want 5000/3000/s", w)
	}
	clk.advance(10 * time.Second)
	d.ObserveServer("s", ServerStats{Clients: 5000, CPU: 0, Connections: 5000})
	if w := d.Stats("s").Window; w != 500*time.Millisecond { // 5000 / (0.2 × 50,000/s)
		t.Errorf("told: window %s, want 500ms", w)
	}
	// A restart: counters back to 0. The busy share stays.
	clk.advance(10 * time.Second)
	d.ObserveServer("s", ServerStats{Clients: 3, CPU: time.Millisecond, Connections: 3})
	if st := d.Stats("s"); st.StartRate != 10000 || st.Window != 300*time.Microsecond {
		t.Errorf("after a restart: start %g, window %s; want 10000, 300µs", st.StartRate, st.Window)
	}
	d.ObserveClients("s", 5000)
	d.ReportOverload("s", nil)
	if st := d.Stats("s"); math.Abs(st.AcceptRate-10000/1.5) > 1e-6 {
		t.Errorf("cut: rate %g, want 10000/1.5", st.AcceptRate)
	}

	tl, clk2 := newClocked(t, Options{ConnectCost: 20 * time.Microsecond})
	tl.mu.Lock()
	tl.target("s").tls = true
	tl.mu.Unlock()
	tl.ObserveServer("s", ServerStats{Clients: 5000, CPU: 0, Connections: 5000})
	clk2.advance(10 * time.Second)
	tl.ObserveServer("s", ServerStats{Clients: 5000, CPU: 0, Connections: 5000})
	if st := tl.Stats("s"); st.StartRate != 3000 {
		t.Errorf("TLS: start %g, want AcceptRate 3000", st.StartRate)
	}
}

// TestServerToldLifetime: until two readings tell the busy share, one
// reading with the server's uptime (2 s or more) tells it over the
// server's life: (CPU − Connections × ConnectCost) / (Uptime − 1 s), within
// [0, 1] (uptime_in_seconds is within a second of the time it ran).
// Without a usable uptime the target keeps AcceptRate.
func TestServerToldLifetime(t *testing.T) {
	const c = 20 * time.Microsecond // ConnectCost: 50,000/s at 100%
	for _, tc := range []struct {
		name      string
		o         Options
		s         ServerStats
		wantBusy  float64 // -1: not known
		wantStart float64
	}{
		{"2% busy over 100 s", Options{}, ServerStats{Clients: 100, CPU: 3 * time.Second, Connections: 50000, Uptime: 101 * time.Second}, 0.02, 0.2 * 0.98 * 50000},
		{"2 s of uptime is enough: 1 s for sure", Options{}, ServerStats{Clients: 100, CPU: 500 * time.Millisecond, Connections: 0, Uptime: 2 * time.Second}, 0.5, 0.2 * 0.5 * 50000},
		{"admissions above the CPU: idle", Options{}, ServerStats{Clients: 100, CPU: time.Second, Connections: 1e6, Uptime: time.Minute}, 0, 0.2 * 50000},
		{"connections beyond a Duration's cost", Options{}, ServerStats{Clients: 100, CPU: time.Second, Connections: math.MaxInt64, Uptime: time.Minute}, 0, 0.2 * 50000},
		{"busier than its uptime: saturated", Options{}, ServerStats{Clients: 100, CPU: time.Hour, Connections: 0, Uptime: time.Minute}, 1, 3000.0 / 4},
		{"no uptime (ParseInfo's -1)", Options{}, ServerStats{Clients: 100, CPU: time.Second, Connections: 100, Uptime: -1}, -1, 3000},
		{"uptime 0 (a ServerStats built without it)", Options{}, ServerStats{Clients: 100, CPU: time.Second, Connections: 100}, -1, 3000},
		{"uptime 1 s: maybe a few ms", Options{}, ServerStats{Clients: 100, CPU: 0, Connections: 100, Uptime: time.Second}, -1, 3000},
		{"no CPU", Options{}, ServerStats{Clients: 100, CPU: -1, Connections: 100, Uptime: time.Minute}, -1, 3000},
		{"no connections", Options{}, ServerStats{Clients: 100, CPU: time.Second, Connections: -1, Uptime: time.Minute}, -1, 3000},
		{"off", Options{ConnectCost: -1}, ServerStats{Clients: 100, CPU: 0, Connections: 0, Uptime: time.Minute}, -1, 3000},
	} {
		if tc.o.ConnectCost == 0 {
			tc.o.ConnectCost = c
		}
		tc.o.ServerShare = 0.2
		d, _ := newClocked(t, tc.o)
		d.ObserveServer("s", tc.s)
		st := d.Stats("s")
		if math.Abs(st.ServerBusy-tc.wantBusy) > 1e-9 || math.Abs(st.StartRate-tc.wantStart) > 1e-6 || st.AcceptRate != st.StartRate {
			t.Errorf("%s: busy %g, start %g, rate %g; want busy %g, start %g", tc.name, st.ServerBusy, st.StartRate, st.AcceptRate, tc.wantBusy, tc.wantStart)
		}
		want := time.Duration(100 / tc.wantStart * float64(time.Second))
		if diff := st.Window - want; diff < -time.Microsecond || diff > time.Microsecond {
			t.Errorf("%s: window %s, want 100 clients / %g/s", tc.name, st.Window, tc.wantStart)
		}
	}
}

// TestServerToldLifetimeReplaced: a span of two readings replaces the
// share one reading told over the server's life, and from then on a
// reading's uptime changes nothing; an uptime that went back is a
// restarted server, a new baseline (the span is not taken across it).
func TestServerToldLifetimeReplaced(t *testing.T) {
	d, clk := newClocked(t, Options{ConnectCost: 20 * time.Microsecond, ServerShare: 0.2})
	busy := func() float64 { return d.Stats("s").ServerBusy }
	d.ObserveServer("s", ServerStats{Clients: 10, CPU: 50 * time.Second, Connections: 0, Uptime: 101 * time.Second})
	if b := busy(); b != 0.5 {
		t.Fatalf("one reading: busy %g, want 0.5 over the server's life", b)
	}
	// A reading under minInfoSpan later: still the life's share, now the newer reading's.
	clk.advance(500 * time.Millisecond)
	d.ObserveServer("s", ServerStats{Clients: 10, CPU: 60 * time.Second, Connections: 0, Uptime: 101 * time.Second})
	if b := busy(); b != 0.6 {
		t.Fatalf("a second reading 0.5 s later: busy %g, want 0.6 over the server's life", b)
	}
	// 10 s after the first: the span (0.1 s of CPU in 10 s) replaces it.
	clk.advance(9500 * time.Millisecond)
	d.ObserveServer("s", ServerStats{Clients: 10, CPU: 50*time.Second + 100*time.Millisecond, Connections: 0, Uptime: 110 * time.Second})
	if b := busy(); math.Abs(b-0.01) > 1e-9 {
		t.Fatalf("span of 10 s: busy %g, want 0.01", b)
	}
	// A reading too soon after with a busy life does not undo the span.
	clk.advance(100 * time.Millisecond)
	d.ObserveServer("s", ServerStats{Clients: 10, CPU: 80 * time.Second, Connections: 0, Uptime: 110 * time.Second})
	if b := busy(); math.Abs(b-0.01) > 1e-9 {
		t.Fatalf("a busy life after a span: busy %g, want the span's 0.01", b)
	}
	// The uptime went back while the counters rose: a restart, a new
	// baseline; the span's share stays and the next span is from it.
	clk.advance(10 * time.Second)
	d.ObserveServer("s", ServerStats{Clients: 10, CPU: 90 * time.Second, Connections: 20, Uptime: 5 * time.Second})
	if b := busy(); math.Abs(b-0.01) > 1e-9 {
		t.Fatalf("restart by uptime: busy %g, want the span's 0.01 kept", b)
	}
	clk.advance(10 * time.Second)
	d.ObserveServer("s", ServerStats{Clients: 10, CPU: 92 * time.Second, Connections: 20, Uptime: 15 * time.Second})
	if b := busy(); math.Abs(b-0.2) > 1e-9 {
		t.Fatalf("span after the restart: busy %g, want 0.2 (2 s of CPU in 10 s)", b)
	}
}

// TestServerToldLifetimeRestart: while the share is the life's, the
// first reading of a restarted server tells the new server's life, once
// it reports 2 s.
func TestServerToldLifetimeRestart(t *testing.T) {
	d, clk := newClocked(t, Options{ConnectCost: 20 * time.Microsecond, ServerShare: 0.2})
	d.ObserveServer("s", ServerStats{Clients: 10, CPU: 50 * time.Second, Connections: 0, Uptime: 101 * time.Second})
	clk.advance(2 * time.Second)
	d.ObserveServer("s", ServerStats{Clients: 10, CPU: 0, Connections: 0, Uptime: 0}) // just started: the CPU went back
	if b := d.Stats("s").ServerBusy; b != 0.5 {
		t.Fatalf("restarted server at uptime 0: busy %g, want the old life's 0.5 kept", b)
	}
	clk.advance(500 * time.Millisecond)
	d.ObserveServer("s", ServerStats{Clients: 10, CPU: 200 * time.Millisecond, Connections: 0, Uptime: 3 * time.Second})
	if b := d.Stats("s").ServerBusy; math.Abs(b-0.1) > 1e-9 {
		t.Fatalf("restarted server at 3 s: busy %g, want its life's 0.1 (0.2 s of CPU over 2 s)", b)
	}
}

func TestObserveInfo(t *testing.T) {
	d, clk := newClocked(t, Options{MaxAcceptRate: 1e6})
	if err := d.ObserveInfo("s", "-ERR unknown command"); err == nil {
		t.Error("an error reply was accepted")
	}
	info := func(cpu string, conns int) string {
		return strings.Join([]string{"# Clients", "connected_clients:2000", "# CPU", "used_cpu_sys_main_thread:" + cpu,
			"used_cpu_user_main_thread:0", "# Stats", "total_connections_received:" + strings.Repeat("1", conns)}, "\r\n")
	}
	for _, s := range []string{info("1.0", 4), info("1.1", 4)} {
		if err := d.ObserveInfo("s", s); err != nil {
			t.Fatal(err)
		}
		clk.advance(10 * time.Second)
	}
	st := d.Stats("s")
	want := DefaultServerShare * 0.99 / DefaultConnectCost.Seconds()
	if math.Abs(st.ServerBusy-0.01) > 1e-9 || math.Abs(st.StartRate-want) > 1e-6 {
		t.Errorf("busy %g, start %g; want 0.01, %g", st.ServerBusy, st.StartRate, want)
	}
}

func TestServerShareOption(t *testing.T) {
	for _, v := range []float64{-0.1, 1.5, math.NaN(), math.Inf(1)} {
		if _, err := New(Options{ServerShare: v}); err == nil {
			t.Errorf("ServerShare %g accepted", v)
		}
	}
	if _, err := New(Options{ConnectCost: -2}); err == nil {
		t.Error("ConnectCost -2 accepted")
	}
}

// FuzzParseInfo: any text parses without panicking into fields that are
// absent (-1) or within range, and ObserveInfo on it keeps the dialer's
// rate finite and within its bounds.
func FuzzParseInfo(f *testing.F) {
	if b, err := os.ReadFile("testdata/info_valkey801.txt"); err == nil {
		f.Add(string(b))
		f.Add(strings.ReplaceAll(string(b), "\n", "\r\n"))
	}
	f.Add("connected_clients:1\nused_cpu_sys:1e308\nused_cpu_user:1e308\ntotal_connections_received:9223372036854775807\n")
	f.Add("txt:used_cpu_sys_main_thread:0.1\nused_cpu_user_main_thread:-0\n")
	f.Add(":\n::\nconnected_clients:\n")
	if b, err := os.ReadFile("testdata/info_server_valkey801.txt"); err == nil {
		f.Add(string(b))
	}
	f.Add("connected_clients:1\nused_cpu_sys:1\nused_cpu_user:0\ntotal_connections_received:1\nuptime_in_seconds:1\n")
	f.Add("connected_clients:1\nused_cpu_sys:3e9\nused_cpu_user:0\ntotal_connections_received:0\nuptime_in_seconds:3e9\n")
	f.Fuzz(func(t *testing.T, info string) {
		s, err := ParseInfo(info)
		if s.Clients < -1 || s.CPU < -1 || s.Connections < -1 || s.Uptime < -1 || s.Uptime > maxInfoSeconds*time.Second {
			t.Fatalf("out of range: %+v", s)
		}
		if err == nil && s.Clients < 0 && s.CPU < 0 {
			t.Fatalf("no field and no error: %+v", s)
		}
		d, clk := newClocked(t, Options{})
		for range 2 {
			_ = d.ObserveInfo("s", info)
			clk.advance(2 * time.Second)
		}
		if err != nil {
			return // nothing observed
		}
		st := d.Stats("s")
		if math.IsNaN(st.StartRate) || st.StartRate < 3000.0/4 || st.StartRate > 4*3000 || st.Window < 0 {
			t.Fatalf("start rate %g, window %s", st.StartRate, st.Window)
		}
	})
}

// rule15 is the restart factor the rule's tests run at (the default, 1,
// leaves the learned rate, which shows nothing of the rule).
const rule15 = 1.5

// TestRestartWindow: an episode a refused connect started again (the
// server is a new process) spreads the fleet at restartFactor times the
// server-told rate, at most MaxAcceptRate (by default 1: the learned
// rate); without the server-told rate
// (no INFO, TLS, ConnectCost -1), before a refusal and after the episode
// the window is the learned rate's, and a cut inside the restarted
// episode applies to the faster rate.
func TestRestartWindow(t *testing.T) {
	const addr = "10.0.0.5:6379"
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	per := func(rate float64) time.Duration { return time.Duration(8500 / rate * float64(time.Second)) } // as window()
	// 0.17 / 20µs = 8,500/s on an idle server: 8,500 clients, 1 s.
	told := Options{ConnectCost: 20 * time.Microsecond, MaxAcceptRate: 1e6, BreakerThreshold: -1, Backoff: backoff.Immediate{}}
	tests := []struct {
		name   string
		o      Options
		tls    bool
		noInfo bool // connected_clients only: no CPU readings
		refuse bool
		then   string // "", "cut" (an overload after the refusal), "new episode" (healthy, then lost again)
		dflt   bool   // the default restart factor, not rule15
		want   time.Duration
	}{
		{name: "loss, no refusal: the learned rate", o: told, want: time.Second},
		{name: "refused, default factor: the learned rate", o: told, refuse: true, dflt: true, want: time.Second},
		{name: "refused: 1.5 x the server-told rate", o: told, refuse: true, want: per(8500 * 1.5)},
		{name: "refused: at most MaxAcceptRate", o: func() Options { o := told; o.MaxAcceptRate = 10000; return o }(), refuse: true, want: per(10000)},
		{name: "refused, then an overload cuts the faster rate", o: told, refuse: true, then: "cut", want: per(8500 * 1.5 / 1.5)},
		// The clean reconnect raised the learned rate by AcceptRate/2.
		{name: "refused, then a new episode: the learned rate again", o: told, refuse: true, then: "new episode", want: per(8500 + 1500)},
		{name: "refused over TLS: AcceptRate", o: told, tls: true, refuse: true, want: per(3000)},
		{name: "refused without CPU readings: AcceptRate", o: told, noInfo: true, refuse: true, want: per(3000)},
		{name: "refused, ConnectCost -1: AcceptRate", o: func() Options { o := told; o.ConnectCost = -1; return o }(), refuse: true, want: per(3000)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, clk := newClocked(t, tc.o)
			if !tc.dflt {
				d.restartFactor = rule15
			}
			if tc.tls {
				d.mu.Lock()
				d.target(addr).tls = true
				d.mu.Unlock()
			}
			for range 2 {
				if tc.noInfo {
					d.ObserveClients(addr, 8500)
				} else {
					d.ObserveServer(addr, ServerStats{Clients: 8500, CPU: 0, Connections: 8500})
				}
				clk.advance(10 * time.Second)
			}
			connectHealthy(t, d, clk, addr).Lost(io.EOF)
			if tc.refuse {
				r, err := d.Reserve(addr)
				if err != nil {
					t.Fatal(err)
				}
				clk.advance(r.Wait)
				_ = r.Dialed(time.Millisecond, refused)
			}
			switch tc.then {
			case "cut":
				d.ReportOverload(addr, nil)
			case "new episode":
				r, _ := d.Reserve(addr)
				clk.advance(r.Wait)
				r = connectHealthy(t, d, clk, addr)
				clk.advance(time.Minute)
				r.Lost(io.EOF)
			}
			if got := d.Stats(addr).Window; got != tc.want {
				t.Errorf("window %s, want %s", got, tc.want)
			}
		})
	}
}

// TestRefusedRetryAfterDraws: a client refused for the first time inside
// an episode retries after the episode's own draws end, at the place its
// draw had among them, spread over the restarted episode's window: in a
// flat episode at the learned rate that is exactly one window after the
// refusal (the fleet keeps its phases); at the restart rate the refused
// clients come after the episode's end, faster, in their order; a second
// refusal retries one restarted window after it.
func TestRefusedRetryAfterDraws(t *testing.T) {
	const addr = "10.0.0.5:6379"
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	ms := time.Millisecond
	tests := []struct {
		name   string
		info   bool          // two INFO readings: the restart rate (rule15 x 8,500/s, unless dflt)
		ramp   time.Duration // DisconnectCost (-1: none)
		at     time.Duration // the refusal's offset from the loss
		second bool          // refused again at the retry
		dflt   bool          // the default restart factor (1), not rule15
		want   time.Duration // the retry's offset from the refusal
	}{
		// 3,000 clients at 3,000/s: a 1 s window, no ramp.
		{name: "flat, learned rate: one window later", ramp: -1, at: 300 * ms, want: time.Second},
		{name: "flat, learned rate, late draw: one window later", ramp: -1, at: 900 * ms, want: time.Second},
		// 8,500 clients at 8,500/s (1 s), restart window 1/1.5 s: the
		// episode ends at 1 s, the retry 0.3 × 0.667 s after that.
		{name: "flat, restart rate: after the draws, faster", info: true, ramp: -1, at: 300 * ms, want: 700*ms + 200*ms},
		{name: "flat, restart rate, late draw", info: true, ramp: -1, at: 900 * ms, want: 100*ms + 600*ms},
		{name: "restart rate, second refusal: one restarted window", info: true, ramp: -1, at: 300 * ms, second: true, want: time.Second * 2 / 3},
		// The default factor: the restarted window is the learned one.
		{name: "flat, server-told rate, default factor: one window later", info: true, ramp: -1, at: 300 * ms, dflt: true, want: time.Second},
		// 3,000 clients, ramp 3,000 × 100µs = 0.3 s: the episode ends at
		// 1.15 s; a refusal at 0.15 s in the ramp has a share of
		// 0.15²/(2 × 0.3 × 1) = 0.0375 of the draws.
		{name: "in the ramp, learned rate", ramp: 100 * time.Microsecond, at: 150 * ms, want: 1000*ms + 37500*time.Microsecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{FleetSize: 3000, DisconnectCost: tc.ramp, BreakerThreshold: -1, Backoff: backoff.Immediate{}}
			if tc.info {
				o.ConnectCost, o.MaxAcceptRate = 20*time.Microsecond, 1e6
			}
			d, clk := newClocked(t, o)
			if !tc.dflt {
				d.restartFactor = rule15
			}
			if tc.info {
				for range 2 {
					d.ObserveServer(addr, ServerStats{Clients: 8500, CPU: 0, Connections: 8500})
					clk.advance(10 * time.Second)
				}
			}
			connectHealthy(t, d, clk, addr).Lost(io.EOF)
			clk.advance(tc.at)
			// A dial of the episode, made at the refusal's offset (the
			// caller dials when it likes; Reserve's Wait is not taken).
			r, err := d.Reserve(addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = r.Dialed(time.Millisecond, refused)
			if tc.second {
				r, _ := d.Reserve(addr)
				clk.advance(r.Wait)
				_ = r.Dialed(time.Millisecond, refused)
			}
			lo, hi := spreadAfterLoss(t, d, addr, 20)
			if lo != hi || lo < tc.want-time.Microsecond || lo > tc.want+time.Microsecond {
				t.Errorf("retries wait [%s, %s] after the refusal, want %s", lo, hi, tc.want)
			}
		})
	}
}

// TestRefusedRetryNotForward: a second connection of the process refused
// later in the same outage does not bring the first one's retry (placed
// after the episode's draws) forward.
func TestRefusedRetryNotForward(t *testing.T) {
	const addr = "10.0.0.5:6379"
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	d, clk := newClocked(t, Options{FleetSize: 3000, DisconnectCost: -1, BreakerThreshold: -1, Backoff: backoff.Immediate{},
		ConnectCost: 20 * time.Microsecond, MaxAcceptRate: 1e6})
	d.restartFactor = rule15
	for range 2 {
		d.ObserveServer(addr, ServerStats{Clients: 8500, CPU: 0, Connections: 8500})
		clk.advance(10 * time.Second)
	}
	connectHealthy(t, d, clk, addr).Lost(io.EOF)
	clk.advance(100 * time.Millisecond)
	r1, _ := d.Reserve(addr)
	_ = r1.Dialed(time.Millisecond, refused) // retry at 1 s + 0.1 × 2/3 s from the loss
	clk.advance(10 * time.Millisecond)
	r2, _ := d.Reserve(addr)
	_ = r2.Dialed(time.Millisecond, refused) // alone it would retry 2/3 s after this refusal
	lo, hi := spreadAfterLoss(t, d, addr, 5)
	rank, wr := 0.1, d.Stats(addr).Window // the restarted window, 8,500 / 12,750/s
	want := time.Second + time.Duration(rank*float64(wr)) - 110*time.Millisecond
	if lo != hi || lo < want-time.Microsecond || lo > want+time.Microsecond {
		t.Errorf("retries wait [%s, %s], want the first refusal's %s", lo, hi, want)
	}
}

// TestPoolRefusedRetriesKeepPlaces: the connections of one pool (one
// Dialer) lost together and refused at their draws (a restart) each
// retry at their own place after the episode's draws, as clients alone
// would, not all at the pool's last refusal plus a window; the refusals
// count one failure for the backoff; a redial finding no refused dial's
// retry time left takes the latest.
func TestPoolRefusedRetriesKeepPlaces(t *testing.T) {
	const addr, n = "10.0.0.5:6379", 8
	refused := fmt.Errorf("dial: %w", syscall.ECONNREFUSED)
	// 3,000 clients at 3,000/s: a 1 s window, no ramp, and a restarted
	// window of 1 s: a dial refused at a retries at 1 s + a.
	d, clk := newClocked(t, Options{FleetSize: 3000, DisconnectCost: -1, BreakerThreshold: -1, Backoff: backoff.Immediate{}})
	conns := make([]*Reservation, n)
	for i := range conns {
		conns[i] = connectHealthy(t, d, clk, addr)
	}
	for _, c := range conns {
		c.Lost(io.EOF)
	}
	lost := clk.now
	draws, _ := reserveAll(t, d, addr, n)
	slices.SortFunc(draws, func(a, b *Reservation) int { return cmp.Compare(a.Wait, b.Wait) })
	var want []time.Duration // from the loss
	for _, r := range draws {
		clk.now = lost.Add(r.Wait) // each dials at its draw, refused
		_ = r.Dialed(time.Millisecond, refused)
		want = append(want, time.Second+r.Wait)
	}
	if want[0] == want[n-1] {
		t.Fatalf("the pool's %d draws were all at %s", n, draws[0].Wait)
	}
	// Admitted together, refused one after the other: one failure for
	// the backoff, as one client's refusal would be.
	if st := d.Stats(addr); st.Failures != 1 || st.DialFailures != n {
		t.Errorf("the pool's %d refused draws: %d backoff failures, %d dial failures; want 1, %d", n, st.Failures, st.DialFailures, n)
	}
	var got []time.Duration
	for range n + 1 {
		r, err := d.Reserve(addr)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, clk.now.Sub(lost)+r.Wait)
		r.Close()
	}
	for i := range n {
		if diff := got[i] - want[i]; diff < -time.Microsecond || diff > time.Microsecond {
			t.Errorf("redial %d retries %s after the loss, want %s (its refusal's place; all: %v)", i, got[i], want[i], got)
		}
	}
	if got[n] != got[n-1] {
		t.Errorf("a redial beyond the refused dials retries %s after the loss, want the latest, %s", got[n], got[n-1])
	}
}
