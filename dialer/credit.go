package dialer

// Credits: the redials that replace connections lost in a reconnect
// episode are paced by the episode's window, not by the per-target token
// bucket (Options.Rate, Burst).
//
// The token bucket keeps a pool from growing all at once: 20 new
// connections a second per target per process. But it cannot tell growth
// from replacement. A process with a pool of 100 connections that a
// failover or CLIENT KILL closes at once needed ~4.5 s to dial them back
// at 20/s after its burst of 10, whatever the server could admit: in the
// lab (150 processes × 100 connections, kill, busy host) the fleet came
// back at a flat 150 × 20 = 3,000/s and took 4.8 s against immediate's
// 1.5–2.4 s. Those redials are already spread: every one of them waits
// for its draw in the episode's window, which is sized for the whole
// fleet at the rate the server admits. Rate-limiting them again only
// stretches the episode.
//
// The rule: every loss of a connection that the server had admitted (it
// completed its handshake) gives the target one credit. A dial admitted
// inside the episode takes a credit, if there is one, instead of a token;
// one that fails before the server admitted it (refused, timed out,
// rejected at maxclients) gives its credit back, since the connection it
// was to replace is still missing. So there are never more credits than
// connections the episode lost and has not replaced, and dials beyond
// them — a pool growing past what it had — still take tokens. Credits
// expire with the episode: the first loss after it starts a new count,
// and a dial that finds the episode over clears them.

// takeCredit takes one of t's credits for a dial admitted now: true if
// the dial replaces a connection lost in the current episode and skips
// the token bucket.
func (d *Dialer) takeCredit(t *target) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.inEpisode(t, d.o.Now()) {
		t.credits = 0
		return false
	}
	if t.credits == 0 {
		return false
	}
	t.credits--
	t.stats.CreditDials++
	return true
}

// grantCredit records the loss of an admitted connection: one more
// connection the episode may redial without a token. Called with mu
// held, after the loss was recorded (markLoss: the episode is under way).
func (d *Dialer) grantCredit(t *target) {
	if d.inEpisode(t, d.o.Now()) {
		t.credits++
	}
}

// refundCredit gives back the credit of a dial that did not replace the
// connection it was for (it failed before the server admitted it, or
// never started). Called with mu held.
func (d *Dialer) refundCredit(t *target) {
	d.grantCredit(t)
}

// settleCredit accounts for the end of c (called with d.mu held, once,
// when its loss or failure is recorded): a connection the server had
// admitted gives a credit; one that held a credit but was never admitted
// gives it back.
func (c *Conn) settleCredit() {
	c.mu.Lock()
	handshook, credit := c.handshook, c.credit
	c.credit = false
	c.mu.Unlock()
	switch {
	case handshook:
		c.d.grantCredit(c.t)
	case credit:
		c.d.refundCredit(c.t)
	}
}
