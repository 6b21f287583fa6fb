package dialer

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ServerStats is what the dialer uses from one INFO reply of the server
// (sections server, clients, cpu and stats: `INFO server clients cpu
// stats`, or INFO with no argument). Fields the reply did not hold are -1.
type ServerStats struct {
	// Clients is connected_clients: the fleet's connection count, which
	// sizes the reconnect window (as ObserveClients).
	Clients int
	// CPU is the server's main-thread CPU time since it started:
	// used_cpu_sys_main_thread + used_cpu_user_main_thread (Valkey 7+,
	// Redis 7+), else the whole process's used_cpu_sys + used_cpu_user.
	// Two readings give how busy the thread that accepts connections is.
	CPU time.Duration
	// Connections is total_connections_received: the connections the
	// server admitted since it started. Its change between two readings
	// takes the CPU they cost out of the busy time.
	Connections int64
	// Uptime is uptime_in_seconds (section server): how long the server
	// has run. With CPU and Connections it tells the busy share over the
	// server's life from one reading, until two readings tell it over
	// their span (see ObserveServer). Below 2 s (0 included, as in a
	// ServerStats built without it) it is not used.
	Uptime time.Duration
}

// ErrInfo: ParseInfo found none of the fields the dialer uses.
var ErrInfo = errors.New("dialer: INFO reply has neither connected_clients nor CPU times")

// ParseInfo extracts ServerStats from the text of an INFO reply ("key:value"
// lines, CRLF or LF, "# Section" headers; a RESP3 verbatim string's "txt:"
// prefix is accepted). It is outside data: values that do not parse, are
// negative or not finite count as absent (-1), and a reply with none of
// connected_clients and the CPU times is ErrInfo.
func ParseInfo(info string) (ServerStats, error) {
	info = strings.TrimPrefix(info, "txt:")
	s := ServerStats{Clients: -1, CPU: -1, Connections: -1, Uptime: -1}
	var sys, user, sysMain, userMain, uptime float64 = -1, -1, -1, -1, -1
	for len(info) > 0 {
		line, rest, _ := strings.Cut(info, "\n")
		info = rest
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if !ok {
			continue
		}
		switch k {
		case "connected_clients":
			if n, err := strconv.Atoi(v); err == nil && n >= 0 && s.Clients < 0 {
				s.Clients = n
			}
		case "total_connections_received":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 && s.Connections < 0 {
				s.Connections = n
			}
		case "used_cpu_sys":
			sys = firstSeconds(sys, v)
		case "used_cpu_user":
			user = firstSeconds(user, v)
		case "used_cpu_sys_main_thread":
			sysMain = firstSeconds(sysMain, v)
		case "used_cpu_user_main_thread":
			userMain = firstSeconds(userMain, v)
		case "uptime_in_seconds":
			uptime = firstSeconds(uptime, v)
		}
	}
	if uptime >= 0 {
		s.Uptime = seconds(uptime)
	}
	switch {
	case sysMain >= 0 && userMain >= 0:
		s.CPU = seconds(sysMain + userMain)
	case sys >= 0 && user >= 0:
		s.CPU = seconds(sys + user)
	}
	if s.Clients < 0 && s.CPU < 0 {
		return s, ErrInfo
	}
	return s, nil
}

// maxInfoSeconds bounds a CPU time or uptime read from INFO (about 100
// years), far above any real one and within time.Duration.
const maxInfoSeconds = 3e9

// firstSeconds parses v as seconds (of CPU, of uptime) unless cur already holds a
// value (the first of a repeated key wins); -1 when it does not parse.
func firstSeconds(cur float64, v string) float64 {
	if cur >= 0 {
		return cur
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || !(f >= 0 && f <= maxInfoSeconds) { // also NaN, ±Inf
		return -1
	}
	return f
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// serverState is what a target learned from the server's INFO readings.
// Guarded by Dialer.mu.
type serverState struct {
	// last is the reading the next one is compared with, taken at lastAt
	// (zero: none yet).
	last   ServerStats
	lastAt time.Time
	// busy is the share of the server's main thread used by everything
	// but admitting connections: between the last two readings at least
	// minInfoSpan apart, or, until there were two, over the server's
	// uptime as one reading told it (lifetime); known says there is one.
	busy     float64
	known    bool
	lifetime bool
}

// minInfoSpan is the shortest time between two INFO readings the busy
// share is computed over: CPU times have microsecond resolution, but a
// short span is one burst of commands, not the server's load.
const minInfoSpan = time.Second

// uptimeError is how far uptime_in_seconds may be from the time the
// server has run: it is the difference of two whole-second clocks (now
// and the start), so within ±1 s. One reading's share is taken over its
// uptime less this, which is less than the time the server ran: the life
// then reads as busy as it was or busier, never idler. A reading tells
// the life's share from an uptime of minInfoSpan + uptimeError (2 s) on.
const uptimeError = time.Second

// ObserveInfo parses an INFO reply from addr's server (see ParseInfo;
// `INFO server clients cpu stats` holds all it uses) and passes it to
// ObserveServer. Read it while the target is healthy, now and then: one
// reading tells how busy the server has been since it started, two
// some seconds apart how busy it is now, and a later loss then starts at
// the rate the server can take (docs/backoff.md).
func (d *Dialer) ObserveInfo(addr, info string) error {
	s, err := ParseInfo(info)
	if err != nil {
		return fmt.Errorf("dialer: observe %s: %w", addr, err)
	}
	d.ObserveServer(addr, s)
	return nil
}

// ObserveServer records one reading of addr's server, taken at
// Options.Now(). Clients ≥ 0 is connected_clients, as ObserveClients.
// With CPU and Connections known, each reading at least a second after
// the one it is compared with gives the share of the main thread the
// server spent on anything but admitting connections (ρ); the target's
// starting admission rate is then ServerShare × (1 − ρ) / ConnectCost
// (see startRate) instead of AcceptRate. Until there are two such
// readings, one with an Uptime of 2 s or more gives ρ over the server's
// life: its CPU less its connections' cost, over its uptime less a
// second (uptime_in_seconds is whole seconds).
// A reading whose counters or uptime went back (a restarted server) is
// the baseline for the next one.
func (d *Dialer) ObserveServer(addr string, s ServerStats) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.target(addr)
	if s.Clients >= 0 {
		t.observed = s.Clients
	}
	if s.CPU < 0 || s.Connections < 0 || d.o.ConnectCost == -1 {
		return
	}
	now, sv := d.o.Now(), &t.server
	if sv.lastAt.IsZero() || restarted(sv.last, s) || now.Before(sv.lastAt) {
		// The first reading, or a restarted server: a new baseline. A
		// busy share already known from two readings stays (the load is
		// the fleet's).
		sv.last, sv.lastAt = s, now
		d.observeLifetime(t, s)
		return
	}
	span := now.Sub(sv.lastAt)
	if span < minInfoSpan {
		d.observeLifetime(t, s)
		return
	}
	admitted := time.Duration(s.Connections-sv.last.Connections) * d.o.ConnectCost
	sv.busy, sv.known, sv.lifetime = busyShare((s.CPU-sv.last.CPU-admitted).Seconds(), span.Seconds()), true, false
	sv.last, sv.lastAt = s, now
	d.emit(t, EventWindow, d.window(t), nil)
}

// restarted: reading s is of a server that started again since last (its
// counters or its uptime went back).
func restarted(last, s ServerStats) bool {
	return s.CPU < last.CPU || s.Connections < last.Connections || s.Uptime > 0 && s.Uptime < last.Uptime
}

// observeLifetime takes t's busy share from one reading, s, over the
// server's uptime, while no two readings told it: an instance that has
// just connected (a new process, a client back from a failover) would
// otherwise start its first wave at AcceptRate, with a window up to
// twice its fleet's (docs/backoff.md, "One reading"). The life's share
// errs busy where the server started with work (loading its data) and
// where uptime_in_seconds is rounded down; it errs idle where the
// server was quieter before than now, which the span of the next
// reading corrects. Called with mu held.
func (d *Dialer) observeLifetime(t *target, s ServerStats) {
	sv := &t.server
	span := s.Uptime - uptimeError
	if sv.known && !sv.lifetime || span < minInfoSpan {
		return
	}
	// In float seconds: Connections × ConnectCost may not fit a Duration.
	cpu := s.CPU.Seconds() - float64(s.Connections)*d.o.ConnectCost.Seconds()
	sv.busy, sv.known, sv.lifetime = busyShare(cpu, span.Seconds()), true, true
	d.emit(t, EventWindow, d.window(t), nil)
}

// busyShare is cpu over span (seconds, span > 0) within [0, 1].
func busyShare(cpu, span float64) float64 {
	return min(max(cpu/span, 0), 1)
}

// minHeadroom: a server reported busier than this share is taken to have
// this much of its thread left (1 − 0.95): a reading at 100% may be an
// artefact (the whole process's CPU with I/O threads), and the learned
// rate corrects whatever is left.
const minHeadroom = 0.05

// startRate is the admission rate t's episodes start from before any was
// learned: ServerShare × (1 − ρ) / ConnectCost once INFO readings gave
// the server's busy share ρ (two, or one with the server's uptime),
// within [AcceptRate/4, MaxAcceptRate]; AcceptRate before that, when
// ConnectCost is -1 and for a target dialled over TLS (see
// Options.ConnectCost). Called with mu held.
func (d *Dialer) startRate(t *target) float64 {
	if !d.serverTold(t) {
		return d.o.AcceptRate
	}
	r := d.o.ServerShare * max(1-t.server.busy, minHeadroom) / d.o.ConnectCost.Seconds()
	if math.IsNaN(r) {
		return d.o.AcceptRate
	}
	return min(max(r, d.o.AcceptRate/4), d.o.MaxAcceptRate)
}

// serverTold: t's starting rate is the one the server's INFO told (two
// readings or one with uptime, ConnectCost not -1, not TLS). Called with
// mu held.
func (d *Dialer) serverTold(t *target) bool {
	return t.server.known && d.o.ConnectCost != -1 && !t.tls
}
