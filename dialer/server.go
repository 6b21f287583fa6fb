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
// (sections clients, cpu and stats: `INFO clients cpu stats`, or INFO
// with no argument). Fields the reply did not hold are -1.
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
	s := ServerStats{Clients: -1, CPU: -1, Connections: -1}
	var sys, user, sysMain, userMain float64 = -1, -1, -1, -1
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
		}
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

// maxInfoSeconds bounds a CPU time read from INFO (about 100 years), far
// above any real one and within time.Duration.
const maxInfoSeconds = 3e9

// firstSeconds parses v as seconds of CPU unless cur already holds a
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
	// but admitting connections between the last two readings at least
	// minInfoSpan apart; known says there were two.
	busy  float64
	known bool
}

// minInfoSpan is the shortest time between two INFO readings the busy
// share is computed over: CPU times have microsecond resolution, but a
// short span is one burst of commands, not the server's load.
const minInfoSpan = time.Second

// ObserveInfo parses an INFO reply from addr's server (see ParseInfo;
// `INFO clients cpu stats` holds all it uses) and passes it to
// ObserveServer. Read it while the target is healthy, now and then: two
// readings some seconds apart tell how busy the server is, and a later
// loss then starts at the rate the server can take (docs/backoff.md).
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
// (see startRate) instead of AcceptRate. A reading whose counters went
// back (a restarted server) is the baseline for the next one.
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
	if sv.lastAt.IsZero() || s.CPU < sv.last.CPU || s.Connections < sv.last.Connections || now.Before(sv.lastAt) {
		// The first reading, or a restarted server: a new baseline. A
		// busy share already known stays (the load is the fleet's).
		sv.last, sv.lastAt = s, now
		return
	}
	span := now.Sub(sv.lastAt)
	if span < minInfoSpan {
		return
	}
	admitted := time.Duration(s.Connections-sv.last.Connections) * d.o.ConnectCost
	sv.busy, sv.known = busyShare(s.CPU-sv.last.CPU-admitted, span), true
	sv.last, sv.lastAt = s, now
	d.emit(t, EventWindow, d.window(t), nil)
}

// busyShare is cpu over span within [0, 1].
func busyShare(cpu, span time.Duration) float64 {
	return min(max(float64(cpu)/float64(span), 0), 1)
}

// minHeadroom: a server reported busier than this share is taken to have
// this much of its thread left (1 − 0.95): a reading at 100% may be an
// artefact (the whole process's CPU with I/O threads), and the learned
// rate corrects whatever is left.
const minHeadroom = 0.05

// startRate is the admission rate t's episodes start from before any was
// learned: ServerShare × (1 − ρ) / ConnectCost once two INFO readings gave
// the server's busy share ρ, within [AcceptRate/4, MaxAcceptRate];
// AcceptRate before that, when ConnectCost is -1 and for a target dialled
// over TLS (see Options.ConnectCost). Called with mu held.
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
// readings, ConnectCost not -1, not TLS). Called with mu held.
func (d *Dialer) serverTold(t *target) bool {
	return t.server.known && d.o.ConnectCost != -1 && !t.tls
}
