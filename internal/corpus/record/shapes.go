//go:build linux

package main

import (
	"context"
	"fmt"
	"log"
	"net"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/stormguard/stormguard/internal/corpus"
	"github.com/stormguard/stormguard/internal/sandbox"
)

const s = time.Second

func constRate(r float64) func(time.Duration) float64 {
	return func(time.Duration) float64 { return r }
}

// steadyChurn: per-request connections at rate/s, present 5 s before the
// agent starts, for dur of agent time.
func steadyChurn(rate float64, dur time.Duration) func(context.Context, *run) error {
	return func(ctx context.Context, r *run) error {
		r.churn(ctx, r.dialer(), dur+5*s, constRate(rate))
		r.openPool(ctx, r.dialer(), poolOpts{n: 20, every: 200 * time.Millisecond, lifetime: dur + 5*s})
		sleep(ctx, 5*s)
		if err := r.startAgent(ctx); err != nil {
			return err
		}
		r.at(ctx, dur)
		return nil
	}
}

// fleet opens n pooled clients that redial at once after any error (the
// storm-prone default of many clients), spread over spread, with the given
// command and connect timeouts, and waits until all are up and none has
// redialled for 2 s, so the recording starts from a settled fleet.
func fleet(ctx context.Context, r *run, n int, spread time.Duration, cmdTO, dialTO time.Duration) *pool {
	return fleetWith(ctx, r, n, spread, poolOpts{n: n, every: 250 * time.Millisecond, timeout: cmdTO, redial: true,
		dialTO: dialTO, spread: spread})
}

// fleetWith is fleet with the clients' options given.
func fleetWith(ctx context.Context, r *run, n int, spread time.Duration, o poolOpts) *pool {
	p := r.openPool(ctx, r.dialer(), o)
	deadline := time.Now().Add(spread + 40*s)
	var last int64
	stable := time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		sleep(ctx, 100*time.Millisecond)
		if d := p.dials.Load(); d != last || p.up.Load() < int64(n) {
			last, stable = d, time.Now()
		} else if time.Since(stable) >= 2*s {
			break
		}
	}
	r.note("fleet of %d clients: %d connected, %d dials before the agent started", n, p.up.Load(), p.dials.Load())
	return p
}

func (r *run) killAll(ctx context.Context) error {
	_, err := r.admin(ctx, "CLIENT KILL TYPE normal")
	return err
}

func somax(n int) map[string]string {
	return map[string]string{"net.core.somaxconn": strconv.Itoa(n)}
}

var shapes = []shape{
	// ---- benign: the detector must stay calm ----
	{name: "benign-churn-200", kind: corpus.Benign,
		desc: "per-request connections (connect, PING, close) at 200/s plus a 20-connection pool, present 5 s before the agent starts; 35 s",
		run:  steadyChurn(200, 35*s)},
	{name: "benign-churn-800", kind: corpus.Benign,
		desc: "per-request connections at 800/s (a PHP-style fleet) plus a pool, present before the agent starts; 35 s",
		run:  steadyChurn(800, 35*s)},
	{name: "benign-churn-2000", kind: corpus.Benign,
		desc: "per-request connections at 2,000/s (what the shared box manages; the label notes the measured rate), present before the agent starts; 30 s",
		run:  steadyChurn(2000, 30*s)},
	{name: "benign-deploy-waves", kind: corpus.Benign,
		desc: "rolling deploy: a 100-connection pool; every 8 s a new instance opens its 100-connection pool at once and the old one closes 2 s later (4 waves); 42 s",
		run: func(ctx context.Context, r *run) error {
			old := r.openPool(ctx, r.dialer(), poolOpts{n: 100, every: 200 * time.Millisecond})
			r.churn(ctx, r.dialer(), 50*s, constRate(20))
			sleep(ctx, 3*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			for w := 1; w <= 4; w++ {
				r.at(ctx, time.Duration(w)*8*s)
				nw := r.openPool(ctx, r.dialer(), poolOpts{n: 100, every: 200 * time.Millisecond})
				r.at(ctx, time.Duration(w)*8*s+2*s)
				old.close()
				old = nw
			}
			r.at(ctx, 42*s)
			old.close()
			return nil
		}},
	{name: "benign-deploy-waves-large", kind: corpus.Benign,
		desc: "rolling deploy of a big service: 6 instances × 100 pooled connections; every 10 s the next 600 connections open within 300 ms and the old 600 close 3 s later (4 waves); 47 s",
		run: func(ctx context.Context, r *run) error {
			old := r.openPool(ctx, r.dialer(), poolOpts{n: 600, every: 500 * time.Millisecond, spread: 2 * s})
			r.churn(ctx, r.dialer(), 55*s, constRate(20))
			sleep(ctx, 4*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			for w := 1; w <= 4; w++ {
				r.at(ctx, time.Duration(w)*10*s)
				nw := r.openPool(ctx, r.dialer(), poolOpts{n: 600, every: 500 * time.Millisecond, spread: 300 * time.Millisecond})
				r.at(ctx, time.Duration(w)*10*s+3*s)
				old.close()
				old = nw
			}
			r.at(ctx, 47*s)
			old.close()
			return nil
		}},
	{name: "benign-autoscale-ramp", kind: corpus.Benign,
		desc: "autoscaling: per-request connections ramping 50 → 900/s over 30 s while a new 20-connection pool joins every 5 s; 40 s",
		run: func(ctx context.Context, r *run) error {
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.churn(ctx, r.dialer(), 40*s, func(t time.Duration) float64 {
				return 50 + 850*min(1, t.Seconds()/30)
			})
			for i := 1; i <= 7; i++ {
				r.at(ctx, time.Duration(i)*5*s)
				r.openPool(ctx, r.dialer(), poolOpts{n: 20, every: 200 * time.Millisecond, lifetime: 40*s - time.Duration(i)*5*s})
			}
			r.at(ctx, 40*s)
			return nil
		}},
	{name: "benign-cron-bursts", kind: corpus.Benign,
		desc: "cron jobs: 30 conn/s background; every 10 s a job opens 300 connections within ~100 ms, uses them for 1 s and closes them; 50 s",
		run: func(ctx context.Context, r *run) error {
			r.churn(ctx, r.dialer(), 52*s, constRate(30))
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			for i := 0; i < 5; i++ {
				r.at(ctx, 5*s+time.Duration(i)*10*s)
				p := r.openPool(ctx, r.dialer(), poolOpts{n: 300, every: 200 * time.Millisecond, spread: 100 * time.Millisecond, lifetime: 1200 * time.Millisecond})
				_ = p
			}
			r.at(ctx, 50*s)
			return nil
		}},
	{name: "benign-pool-warmup-somaxconn64", kind: corpus.Benign,
		desc: "somaxconn 64: an application pool of 50 connections opening at once, three times (restarts 10 s apart, the old pool closing first); 35 s",
		opts: sandbox.Options{Sysctls: somax(64)},
		run: func(ctx context.Context, r *run) error {
			r.churn(ctx, r.dialer(), 36*s, constRate(10))
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.poolRestarts(ctx, 3, 5*s, 10*s, 35*s, poolOpts{n: 50, every: 200 * time.Millisecond})
			return nil
		}},
	{name: "benign-cron-bursts-large", kind: corpus.Benign,
		desc: "big cron jobs: 20 conn/s background; every 10 s a batch job opens 800 connections within 200 ms, uses them for 1 s and closes them; 45 s",
		run: func(ctx context.Context, r *run) error {
			r.churn(ctx, r.dialer(), 47*s, constRate(20))
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			for i := 0; i < 4; i++ {
				r.at(ctx, 5*s+time.Duration(i)*10*s)
				r.openPool(ctx, r.dialer(), poolOpts{n: 800, every: 250 * time.Millisecond, spread: 200 * time.Millisecond, lifetime: 1200 * time.Millisecond})
			}
			r.at(ctx, 45*s)
			return nil
		}},
	{name: "benign-pool-warmup-busy-somaxconn64", kind: corpus.Benign,
		desc: "somaxconn 64 on a busy server: 300 pooled connections sending PING every 30 ms; an application pool of 50 connections opens at once three times, 10 s apart; 35 s",
		opts: sandbox.Options{Sysctls: somax(64)},
		run: func(ctx context.Context, r *run) error {
			busy := r.openPool(ctx, r.dialer(), poolOpts{n: 300, every: 30 * time.Millisecond, spread: 3 * s})
			defer busy.close()
			sleep(ctx, 4*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.poolRestarts(ctx, 3, 5*s, 10*s, 35*s, poolOpts{n: 50, every: 200 * time.Millisecond})
			return nil
		}},
	{name: "benign-slow-commands", kind: corpus.Benign,
		desc: "slow commands: two clients run DEBUG SLEEP 0.08 back to back (PING waits 0-160 ms all along), 20 conn/s churn and a pool; present before the agent starts; 40 s",
		opts: sandbox.Options{ValkeyArgs: []string{"--enable-debug-command", "yes"}},
		run: func(ctx context.Context, r *run) error {
			r.openPool(ctx, r.dialer(), poolOpts{n: 2, every: 10 * time.Millisecond, cmd: "DEBUG SLEEP 0.08", lifetime: 46 * s})
			r.openPool(ctx, r.dialer(), poolOpts{n: 20, every: 200 * time.Millisecond, lifetime: 46 * s})
			r.churn(ctx, r.dialer(), 46*s, constRate(20))
			sleep(ctx, 5*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 40*s)
			return nil
		}},
	{name: "benign-keepalive-heavy", kind: corpus.Benign,
		desc: "heavy keepalive load: 300 pooled connections each sending PING every 30 ms (~10,000 commands/s), no new connections; 35 s",
		run: func(ctx context.Context, r *run) error {
			p := r.openPool(ctx, r.dialer(), poolOpts{n: 300, every: 30 * time.Millisecond, spread: 3 * s})
			sleep(ctx, 5*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 35*s)
			p.close()
			return nil
		}},
	{name: "benign-agent-restart", kind: corpus.Benign,
		desc: "agent restart in busy traffic: 600 conn/s per-request churn and a 50-connection pool; the agent runs 20 s, stops, and a new agent starts 2 s later (a restart line: replay starts a fresh detector); 45 s",
		run: func(ctx context.Context, r *run) error {
			r.churn(ctx, r.dialer(), 50*s, constRate(600))
			r.openPool(ctx, r.dialer(), poolOpts{n: 50, every: 200 * time.Millisecond, lifetime: 50 * s})
			sleep(ctx, 3*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 20*s)
			if err := r.restartAgent(ctx, 2*s); err != nil {
				return err
			}
			r.at(ctx, 47*s)
			return nil
		}},
	{name: "benign-valkey-restart", kind: corpus.Benign,
		desc: "Valkey restart: 200 pooled clients with jittered backoff (up to 1 s) reconnect within capacity after Valkey is killed at +15 s and restarted at +16 s; 40 s",
		run: func(ctx context.Context, r *run) error {
			p := r.openPool(ctx, r.dialer(), poolOpts{n: 200, every: 200 * time.Millisecond, redial: true, backoff: time.Second, spread: 2 * s})
			r.churn(ctx, r.dialer(), 42*s, constRate(20))
			sleep(ctx, 3*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 15*s)
			if err := r.sb.StopValkey(); err != nil {
				return err
			}
			r.at(ctx, 16*s)
			if err := r.sb.StartValkey(ctx); err != nil {
				return err
			}
			r.at(ctx, 40*s)
			p.close()
			return nil
		}},
	{name: "benign-replica-fullsync", kind: corpus.Benign,
		desc: "replica full sync: 300,000 keys; a replica in the namespace (port 6380) full-syncs at +5 s and again at +22 s (replica restarted, no persistence), with a pool and 30 conn/s churn on the primary; 40 s",
		opts: sandbox.Options{ValkeyArgs: []string{"--enable-debug-command", "yes", "--repl-diskless-sync", "no"}},
		run: func(ctx context.Context, r *run) error {
			if _, err := r.admin(ctx, "DEBUG POPULATE 300000 key 100"); err != nil {
				return fmt.Errorf("populate: %w", err)
			}
			r.openPool(ctx, r.dialer(), poolOpts{n: 30, every: 200 * time.Millisecond, lifetime: 45 * s})
			r.churn(ctx, r.dialer(), 45*s, constRate(30))
			sleep(ctx, 2*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			for _, at := range []time.Duration{5 * s, 22 * s} {
				r.at(ctx, at)
				stop, err := r.startReplica(ctx)
				if err != nil {
					return err
				}
				r.at(ctx, at+14*s)
				stop()
			}
			r.at(ctx, 40*s)
			return nil
		}},
	{name: "benign-slow-link", kind: corpus.Benign,
		desc: "slow link: clients in their own namespace behind a point-to-point link that delays every packet 20 ms each way (RTT 40 ms; a user-space delay line between two TUN devices, as this kernel has no netem): 150 conn/s per-request churn and a 50-connection pool across it; 35 s",
		opts: sandbox.Options{NoValkey: true, ValkeyArgs: []string{"--bind", "127.0.0.1 10.251.0.1"}},
		run: func(ctx context.Context, r *run) error {
			cns, cleanup, err := r.delayLine(ctx, 20*time.Millisecond)
			if err != nil {
				return err
			}
			defer cleanup()
			if err := r.sb.StartValkey(ctx); err != nil {
				return err
			}
			d := dialer{ns: cns, addr: "10.251.0.1:" + strconv.Itoa(r.sb.Port)}
			r.churn(ctx, d, 40*s, constRate(150))
			r.openPool(ctx, d, poolOpts{n: 50, every: 100 * time.Millisecond, lifetime: 40 * s})
			sleep(ctx, 3*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.note("client-side PING RTT over the link: median %.1f ms", pingRTT(ctx, d, 10*s))
			r.at(ctx, 35*s)
			return nil
		}},

	{name: "benign-narrow-link", kind: corpus.Benign,
		desc: "slow, congested link (this kernel has no netem): clients in their own namespace behind a veth pair whose client end is a 1 Mbit/s token bucket kept full by one bulk writer (8 KB SETs), so every packet from the clients queues for tens of ms; 100 conn/s per-request churn and a 30-connection pool across it; 35 s",
		opts: sandbox.Options{NoValkey: true, ValkeyArgs: []string{"--bind", "127.0.0.1 10.251.0.1"}},
		run: func(ctx context.Context, r *run) error {
			cns, cleanup, err := r.clientNS(ctx, []string{"tbf", "rate", "1mbit", "burst", "8kb", "latency", "60ms"})
			if err != nil {
				return err
			}
			defer cleanup()
			if err := r.sb.StartValkey(ctx); err != nil {
				return err
			}
			d := dialer{ns: cns, addr: "10.251.0.1:" + strconv.Itoa(r.sb.Port)}
			r.openPool(ctx, d, poolOpts{n: 1, every: time.Millisecond, cmd: "SET bulk " + strings.Repeat("x", 8192), timeout: 10 * s, redial: true, backoff: 100 * time.Millisecond, lifetime: 42 * s})
			r.churn(ctx, d, 42*s, constRate(100))
			r.openPool(ctx, d, poolOpts{n: 30, every: 200 * time.Millisecond, timeout: 10 * s, redial: true, backoff: time.Second, lifetime: 42 * s})
			sleep(ctx, 3*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.note("client-side PING RTT over the link: median %.1f ms", pingRTT(ctx, d, 10*s))
			r.at(ctx, 35*s)
			return nil
		}},

	{name: "benign-churn-noisy", kind: corpus.Benign,
		desc: "noisy per-request churn: the rate alternates 300/s and 900/s every second (mean 600/s), with a 20-connection pool, present 5 s before the agent starts; 35 s",
		run: func(ctx context.Context, r *run) error {
			r.churn(ctx, r.dialer(), 40*s, func(t time.Duration) float64 {
				if int(t.Seconds())%2 == 0 {
					return 300
				}
				return 900
			})
			r.openPool(ctx, r.dialer(), poolOpts{n: 20, every: 200 * time.Millisecond, lifetime: 40 * s})
			sleep(ctx, 5*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 35*s)
			return nil
		}},
	{name: "benign-kill-jittered-reconnect", kind: corpus.Benign,
		desc: "well-behaved reconnect: 800 pooled clients with jittered backoff (random 0-2 s before each redial); CLIENT KILL TYPE normal at +12 s, the fleet back within ~2 s at ~400 conn/s, inside the 511-slot queue; 35 s",
		run: func(ctx context.Context, r *run) error {
			p := r.openPool(ctx, r.dialer(), poolOpts{n: 800, every: 250 * time.Millisecond, redial: true, backoff: 2 * s, spread: 4 * s})
			defer p.close()
			sleep(ctx, 6*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 12*s)
			if err := r.killAll(ctx); err != nil {
				return err
			}
			r.at(ctx, 35*s)
			return nil
		}},

	{name: "benign-pool-maxidle-churn", kind: corpus.Benign,
		desc: "client pools with maxIdle below maxActive (a common pool setting): 80 idle pooled connections kept; every 200 ms a burst of requests needs 0-300 more connections at once, which are opened within ~20 ms and closed right after use (mean ~750 new connections/s in bursts); present before the agent starts; 35 s",
		run: func(ctx context.Context, r *run) error {
			r.openPool(ctx, r.dialer(), poolOpts{n: 80, every: 50 * time.Millisecond, lifetime: 42 * s})
			r.churn(ctx, r.dialer(), 42*s, poolBursts(200*time.Millisecond, 20*time.Millisecond, 300, 7))
			sleep(ctx, 5*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 35*s)
			return nil
		}},
	{name: "benign-healthcheck-fleet", kind: corpus.Benign,
		desc: "health-checker fleet: 300 checkers, each from its own address (127.0.1.x-127.0.2.x), open a connection, PING and close every 2 s, all on the same tick (probes aligned to the clock), plus a 20-connection pool; present before the agent starts; 35 s",
		run: func(ctx context.Context, r *run) error {
			r.openPool(ctx, r.dialer(), poolOpts{n: 20, every: 200 * time.Millisecond, lifetime: 42 * s})
			r.healthChecks(ctx, 300, 2*s, 42*s)
			sleep(ctx, 5*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 35*s)
			return nil
		}},
	{name: "benign-pipeline-burst", kind: corpus.Benign,
		desc: "big pipeline bursts: every 5 s four clients each write 100,000 INCRs in one pipeline (Valkey busy for a few hundred ms, PING and accepts waiting behind it), with 300 conn/s per-request churn and a 30-connection pool; present before the agent starts; 40 s",
		run: func(ctx context.Context, r *run) error {
			r.openPool(ctx, r.dialer(), poolOpts{n: 30, every: 200 * time.Millisecond, timeout: 10 * s, lifetime: 47 * s})
			r.churn(ctx, r.dialer(), 47*s, constRate(300))
			sleep(ctx, 4*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			var busy []time.Duration
			for i := 0; i < 7; i++ {
				r.at(ctx, 5*s+time.Duration(i)*5*s)
				t := time.Now()
				var wg sync.WaitGroup
				for c := 0; c < 4; c++ {
					wg.Add(1)
					go func() { defer wg.Done(); _ = pipelineBurst(ctx, r.dialer(), 100000) }()
				}
				wg.Wait()
				busy = append(busy, time.Since(t).Round(10*time.Millisecond))
			}
			r.note("each burst of 4 × 100,000 pipelined INCRs took %v", busy)
			r.at(ctx, 40*s)
			return nil
		}},

	// ---- storms: the detector must reach storm ----
	{name: "storm-kill-all", kind: corpus.Storm,
		desc: "kill-all reconnect: 2,000 pooled clients (1 s command, 250 ms connect timeout) that redial at once when disconnected; CLIENT KILL TYPE normal at +12 s; somaxconn 32; 35 s",
		opts: sandbox.Options{Sysctls: somax(32)},
		run: func(ctx context.Context, r *run) error {
			p := fleet(ctx, r, 2000, 10*s, time.Second, 250*time.Millisecond)
			defer p.close()
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 12*s)
			if err := r.killAll(ctx); err != nil {
				return err
			}
			r.at(ctx, 35*s)
			return nil
		}},
	{name: "storm-restart", kind: corpus.Storm,
		desc: "restart: 1,500 pooled clients redialing every 10 ms without backoff while Valkey is killed at +12 s and restarted at +13.5 s; somaxconn 64; 35 s",
		opts: sandbox.Options{Sysctls: somax(64)},
		run: func(ctx context.Context, r *run) error {
			p := fleet(ctx, r, 1500, 6*s, 250*time.Millisecond, 250*time.Millisecond)
			defer p.close()
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 12*s)
			if err := r.sb.StopValkey(); err != nil {
				return err
			}
			r.at(ctx, 13500*time.Millisecond)
			if err := r.sb.StartValkey(ctx); err != nil {
				return err
			}
			r.at(ctx, 35*s)
			return nil
		}},
	{name: "storm-slow-build", kind: corpus.Storm,
		desc: "slow build behind a stalled server: 150 conn/s per-request churn; Valkey SIGSTOPped at +12 s for 7 s, so the 511-slot accept queue fills over ~3.4 s before it overflows; 35 s",
		opts: sandbox.Options{Sysctls: somax(4096)},
		run: func(ctx context.Context, r *run) error {
			r.churn(ctx, r.dialer(), 40*s, constRate(150))
			r.openPool(ctx, r.dialer(), poolOpts{n: 20, every: 200 * time.Millisecond, timeout: 30 * s, lifetime: 40 * s})
			sleep(ctx, 3*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 12*s)
			if err := r.sb.Signal(syscall.SIGSTOP); err != nil {
				return err
			}
			r.at(ctx, 19*s)
			if err := r.sb.Signal(syscall.SIGCONT); err != nil {
				return err
			}
			r.at(ctx, 35*s)
			return nil
		}},
	{name: "storm-syn-flood", kind: corpus.Storm,
		desc: "SYN flood from 4 sources (127.0.0.2-5, their SYN-ACKs dropped so handshakes never complete) at 1,000 SYN/s for 6 s from +12 s; syncookies off, somaxconn 128; 30 conn/s legitimate churn; 35 s",
		opts: sandbox.Options{Sysctls: map[string]string{"net.core.somaxconn": "128", "net.ipv4.tcp_syncookies": "0", "net.ipv4.tcp_max_syn_backlog": "128"}},
		run: func(ctx context.Context, r *run) error {
			if err := r.nft(ctx, "table inet sgcorpus {\n chain out {\n  type filter hook output priority 0;\n  ip daddr 127.0.0.2-127.0.0.5 tcp flags & (syn|ack) == (syn|ack) drop\n }\n}\n"); err != nil {
				return err
			}
			r.churn(ctx, r.dialer(), 40*s, constRate(30))
			sleep(ctx, 3*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 12*s)
			srcs := []net.IP{net.IPv4(127, 0, 0, 2), net.IPv4(127, 0, 0, 3), net.IPv4(127, 0, 0, 4), net.IPv4(127, 0, 0, 5)}
			if err := r.synFlood(ctx, srcs, 1000, 6*s, 8000); err != nil {
				return err
			}
			r.at(ctx, 35*s)
			return nil
		}},
	{name: "storm-maxclients", kind: corpus.Storm,
		desc: "maxclients exhaustion: maxclients 200 with 150 pooled clients; at +12 s a new deployment of 200 clients connects and retries every ≤500 ms while refused, for 10 s; 35 s",
		opts: sandbox.Options{ValkeyArgs: []string{"--maxclients", "200"}},
		run: func(ctx context.Context, r *run) error {
			p := r.openPool(ctx, r.dialer(), poolOpts{n: 150, every: 200 * time.Millisecond, redial: true, backoff: time.Second, spread: s})
			defer p.close()
			r.churn(ctx, r.dialer(), 40*s, constRate(10))
			sleep(ctx, 3*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 12*s)
			q := r.openPool(ctx, r.dialer(), poolOpts{n: 200, every: 200 * time.Millisecond, redial: true, backoff: 500 * time.Millisecond, lifetime: 10 * s})
			r.at(ctx, 35*s)
			q.close()
			return nil
		}},
	{name: "storm-drizzle", kind: corpus.Storm,
		desc: "a drizzle of drops: somaxconn 16, 200 conn/s per-request churn; every 5 s Valkey stalls for 250 ms (SIGSTOP/SIGCONT), overflowing the queue by a few connections each time; 45 s",
		opts: sandbox.Options{Sysctls: somax(16)},
		run: func(ctx context.Context, r *run) error {
			r.churn(ctx, r.dialer(), 50*s, constRate(200))
			sleep(ctx, 3*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			for i := 0; i < 7; i++ {
				r.at(ctx, 10*s+time.Duration(i)*5*s)
				if err := r.sb.Signal(syscall.SIGSTOP); err != nil {
					return err
				}
				sleep(ctx, 250*time.Millisecond)
				if err := r.sb.Signal(syscall.SIGCONT); err != nil {
					return err
				}
			}
			r.at(ctx, 45*s)
			return nil
		}},
	{name: "storm-relapse", kind: corpus.Storm,
		desc: "a storm that relapses: 1,500 pooled clients redialing at once; CLIENT KILL at +10 s and again at +28 s (before the first storm is over); somaxconn 32; 50 s",
		opts: sandbox.Options{Sysctls: somax(32)},
		run: func(ctx context.Context, r *run) error {
			p := fleet(ctx, r, 1500, 8*s, 250*time.Millisecond, 250*time.Millisecond)
			defer p.close()
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			for _, at := range []time.Duration{10 * s, 28 * s} {
				r.at(ctx, at)
				if err := r.killAll(ctx); err != nil {
					return err
				}
			}
			r.at(ctx, 50*s)
			return nil
		}},
	{name: "storm-tls-handshake", kind: corpus.Storm, tls: true,
		desc: "TLS reconnect storm: 2,500 pooled TLS clients (RSA-2048 server key; 250 ms connect+handshake timeout, 1 s command timeout) that redial at once, brought up over 25 s before the agent starts (3 s timeout for each client's first connect); CLIENT KILL TYPE normal at +12 s; the clients keep redialing until the fleet is stopped at +32 s; 44 s",
		run: func(ctx context.Context, r *run) error {
			p := fleetWith(ctx, r, 2500, 25*s, poolOpts{n: 2500, every: time.Second, timeout: time.Second, redial: true,
				dialTO: 250 * time.Millisecond, firstDialTO: 3 * s, spread: 25 * s})
			defer p.close()
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 12*s)
			if err := r.killAll(ctx); err != nil {
				return err
			}
			r.at(ctx, 32*s)
			up := p.up.Load()
			p.close()
			r.refusedUntil = p.failingUntil(50)
			from := int(r.t0.Sub(p.start)/time.Second) + 12
			r.note("clients connected when the fleet was stopped: %d of 2500; failed dials per second from the kill: %v", up, p.failures(from, from+21))
			r.at(ctx, 44*s)
			return nil
		}},
	{name: "storm-conntrack-full", kind: corpus.Storm,
		desc: "conntrack table filling: the namespace's table is held 5,000 entries below nf_conntrack_max by the long-lived flows of other traffic (assured entries, made over ctnetlink before the agent starts); 30 conn/s churn and a 20-connection pool; at +12 s 300 workers start opening a connection per request as fast as they can for 20 s (a retry loop), each closed connection's entry staying in the table for its TCP close timeout, until the table is full and new connections are dropped before TCP; 40 s",
		run: func(ctx context.Context, r *run) error {
			if err := r.conntrackOn(ctx); err != nil {
				return err
			}
			n, err := r.conntrackBallast(ctx, 5000)
			if err != nil {
				return err
			}
			r.note("ballast: %d conntrack entries inserted", n)
			log.Printf("   ballast: %d conntrack entries", n)
			r.churn(ctx, r.dialer(), 45*s, constRate(30))
			r.openPool(ctx, r.dialer(), poolOpts{n: 20, every: 200 * time.Millisecond, timeout: 5 * s, redial: true, backoff: s, lifetime: 45 * s})
			sleep(ctx, 3*s)
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 12*s)
			p := r.openPool(ctx, dialer{ns: r.sb.NetNS, addr: r.sb.Addr(), timeout: time.Second},
				poolOpts{n: 300, every: time.Millisecond, cmd: "PING", oneShot: true, redial: true, dialTO: time.Second, lifetime: 20 * s})
			r.at(ctx, 32*s)
			p.close()
			r.refusedUntil = p.failingUntil(50)
			r.note("retry workers: %d dials, failed dials per second from +12 s: %v", p.dials.Load(), p.failures(0, 20))
			cnt, _ := r.sb.Sysctl("net.netfilter.nf_conntrack_count")
			log.Printf("   conntrack count at +32 s: %s; %s", cnt, r.notes[len(r.notes)-1])
			r.at(ctx, 40*s)
			return nil
		}},
	{name: "storm-stall-timeouts", kind: corpus.Storm,
		desc: "timeouts into a reconnect storm: 800 pooled clients with 250 ms command and connect timeouts that redial at once; Valkey stalls 2 s at +12 s (SIGSTOP), every client times out and redials into the stalled queue; somaxconn 128; 35 s",
		opts: sandbox.Options{Sysctls: somax(128)},
		run: func(ctx context.Context, r *run) error {
			p := fleet(ctx, r, 800, 5*s, 250*time.Millisecond, 250*time.Millisecond)
			defer p.close()
			if err := r.startAgent(ctx); err != nil {
				return err
			}
			r.at(ctx, 12*s)
			if err := r.sb.Signal(syscall.SIGSTOP); err != nil {
				return err
			}
			r.at(ctx, 14*s)
			if err := r.sb.Signal(syscall.SIGCONT); err != nil {
				return err
			}
			r.at(ctx, 35*s)
			return nil
		}},
}

// nft loads a ruleset inside the namespace (removed with it).
func (r *run) nft(ctx context.Context, rules string) error {
	c := r.sb.Command(ctx, "nft", "-f", "-")
	c.Stdin = strings.NewReader(rules)
	if out, err := c.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", r.sb.Name, err, out)
	}
	return nil
}

// startReplica starts a replica of the sandbox's Valkey on port 6380 in
// the same namespace (no persistence, so every start is a full sync).
func (r *run) startReplica(ctx context.Context) (stop func(), err error) {
	bin, err := sandbox.ValkeyBinary()
	if err != nil {
		return nil, err
	}
	c := r.sb.Command(context.Background(), bin, "--port", "6380", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--replicaof", "127.0.0.1 "+strconv.Itoa(r.sb.Port), "--dir", r.sb.Dir, "--logfile", r.sb.Dir+"/replica.log")
	if err := c.Start(); err != nil {
		return nil, fmt.Errorf("start replica: %w", err)
	}
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	return func() {
		_ = c.Process.Kill()
		select {
		case <-done:
		case <-time.After(5 * s):
		}
	}, nil
}

// clientNS makes a client namespace joined to the sandbox's by a veth pair
// (10.251.0.1 server side, 10.251.0.2 client side) with the qdisc on the
// client's end.
func (r *run) clientNS(ctx context.Context, qdisc []string) (string, func(), error) {
	name := r.sb.Name + "-c"
	ns := "/var/run/netns/" + name
	cleanup := func() { _ = exec.Command("ip", "netns", "del", name).Run() }
	veth := fmt.Sprintf("sgv%d", time.Now().UnixNano()%100000)
	steps := [][]string{
		{"netns", "add", name},
		{"-n", name, "link", "set", "lo", "up"},
		{"link", "add", veth + "s", "netns", r.sb.Name, "type", "veth", "peer", "name", veth + "c", "netns", name},
		{"-n", r.sb.Name, "addr", "add", "10.251.0.1/24", "dev", veth + "s"},
		{"-n", name, "addr", "add", "10.251.0.2/24", "dev", veth + "c"},
		{"-n", r.sb.Name, "link", "set", veth + "s", "up"},
		{"-n", name, "link", "set", veth + "c", "up"},
	}
	for _, st := range steps {
		if out, err := exec.CommandContext(ctx, "ip", st...).CombinedOutput(); err != nil {
			cleanup()
			return "", nil, fmt.Errorf("ip %s: %v: %s", strings.Join(st, " "), err, out)
		}
	}
	for _, q := range [][]string{{name, veth + "c"}} {
		args := append([]string{"netns", "exec", q[0], "tc", "qdisc", "add", "dev", q[1], "root"}, qdisc...)
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			cleanup()
			if strings.Contains(string(out), "qdisc kind is unknown") {
				return "", nil, fmt.Errorf("%w: this kernel has no %s qdisc", errSkip, qdisc[0])
			}
			return "", nil, fmt.Errorf("tc %s on %s: %v: %s", qdisc[0], q[1], err, out)
		}
	}
	return ns, cleanup, nil
}

// pingRTT times PINGs over one connection from d for dur and returns the
// median in ms (the link's RTT as a client sees it).
func pingRTT(ctx context.Context, d dialer, dur time.Duration) float64 {
	c, err := d.dial(ctx)
	if err != nil {
		return -1
	}
	defer c.Close()
	var ms []float64
	end := time.Now().Add(dur)
	for time.Now().Before(end) && ctx.Err() == nil && len(ms) < 1000 {
		t := time.Now()
		if _, err := cmd(c, 5*s, "PING"); err != nil {
			break
		}
		ms = append(ms, float64(time.Since(t).Microseconds())/1000)
		sleep(ctx, 200*time.Millisecond)
	}
	if len(ms) == 0 {
		return -1
	}
	sort.Float64s(ms)
	return ms[len(ms)/2]
}
