package lab

import (
	"context"
	"encoding/json"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/stormguard/stormguard/internal/addr"
)

// Server is the run's Valkey as an agent watching it sees it: the address
// the clients dial (with the run's TLS CA and server name, and the admin
// credentials) and the namespace it listens in.
type Server struct {
	Addr  addr.Addr
	NetNS string
}

// WatchFunc starts something that watches the run's server for the whole
// run — `storm --defuse auto` starts the watch agent with its auto
// mitigations — once the server answers and before the clients start.
// stop ends it and returns the events it raised (state changes,
// mitigations armed and reverted).
type WatchFunc func(ctx context.Context, s Server) (stop func() []AgentEvent, err error)

// AgentEvent is one event of the agent that watched the run, shaped as
// `watch --events` writes it, with its time relative to t0.
type AgentEvent struct {
	Time  time.Time       `json:"-"`
	TMS   int64           `json:"t_ms"`
	Event json.RawMessage `json:"event"`
}

// server describes the run's server for a WatchFunc.
func (r *run) server() (Server, error) {
	host, port, err := net.SplitHostPort(r.cfg.Target)
	if err != nil {
		return Server{}, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return Server{}, err
	}
	a := addr.Addr{Host: host, Port: p, User: r.cfg.User, Password: r.cfg.Password}
	if r.tls != nil {
		a.TLS = true
		a.TLSFiles = addr.TLSFiles{CACert: r.tls.ca, SNI: r.tls.serverName}
	} else if r.cfg.TLSConfig != nil {
		// An outside TLS server: the caller's own settings are not
		// files the agent could load; skip verification, as the lab's
		// own connections are already configured by the caller.
		a.TLS, a.TLSInsecure = true, true
	}
	return Server{Addr: a, NetNS: r.cfg.NetNS}, nil
}

// startWatch runs cfg.Watch, if any, and returns the function that stops
// it once (also called by close on every path out of the run).
func (r *run) startWatch(ctx context.Context) (func() []AgentEvent, error) {
	if r.cfg.Watch == nil {
		return func() []AgentEvent { return nil }, nil
	}
	s, err := r.server()
	if err != nil {
		return nil, err
	}
	stop, err := r.cfg.Watch(ctx, s)
	if err != nil {
		return nil, err
	}
	var once sync.Once
	var evs []AgentEvent
	stopOnce := func() []AgentEvent {
		once.Do(func() { evs = stop() })
		return evs
	}
	r.onClose(func() { stopOnce() })
	return stopOnce, nil
}
