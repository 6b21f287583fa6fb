package source

import (
	"context"
	"errors"
	"sync"
	"time"
)

// peerDumper takes the attribution dumps of one target's port (Set.Peers).
// It belongs to the Set, not to a source: its sock_diag socket is its own,
// dialled on first use, because a dump abandoned at its limit leaves the
// rest of the reply in the socket, so it must never be the accept-queue
// source's or its poller's.
type peerDumper struct {
	netns string
	port  uint16

	mu sync.Mutex // one dump at a time; guards c
	c  *diagConn
}

func newPeerDumper(t Target) *peerDumper {
	p := t.Port()
	if p <= 0 || p > 65535 {
		return nil // the accept-queue source reports the bad port
	}
	return &peerDumper{netns: t.NetNS, port: uint16(p)}
}

// dump takes one dump of the port's SYN_RECV and ESTABLISHED sockets (both
// families), keeping their addresses, stopping after limit sockets (≤ 0:
// 20,000). It takes as long as the kernel's walk of the established hash
// plus ~50 ns per socket kept.
func (p *peerDumper) dump(ctx context.Context, limit int) (PeerDump, error) {
	if limit <= 0 {
		limit = 20000
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(collectTimeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c == nil {
		c, err := dialDiag(p.netns)
		if err != nil {
			return PeerDump{}, Classify("socket dump: sock_diag", err)
		}
		p.c = c
	}
	c := p.c
	start := time.Now()
	d := PeerDump{Time: start}
	reset := func() {
		c.close()
		p.c = nil
	}
	t := diagTally{Port: p.port, KeepPeers: true, MaxPeers: limit}
	err := c.dump(statesSynRecv|statesEstablished, &t, deadline)
	if errors.Is(err, errPeerLimit) {
		d.Truncated, err = true, nil
		reset() // the abandoned rest of the dump is still queued
	}
	if err != nil {
		reset()
		return d, Classify("socket dump", err)
	}
	d.Peers, d.Took = t.Peers, time.Since(start)
	return d, nil
}

// close releases the socket.
func (p *peerDumper) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c != nil {
		p.c.close()
		p.c = nil
	}
}
