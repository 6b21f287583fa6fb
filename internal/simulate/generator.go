package simulate

import "time"

// The client side's CPU. In the lab the whole fleet is one load
// generator on Valkey's machine: every client that notices a lost
// connection and every connect() it makes costs that process CPU, and
// it does them one after another as fast as it gets the CPU, in bursts
// when the machine's scheduler gives it the cores. The lab's timeline
// shows it: Valkey itself frees a client in CLIENT KILL in ~45 µs (a
// kill of 1,000–10,000 idle clients measured directly: 38–51 µs each),
// but the lab's clients saw their closes spread over ~80 µs per client
// when the dialer redialled few of them meanwhile and 100–200 µs when
// every client redialled at once; the busiest 100 ms of those spreads
// was 1.3–2.9× their mean. A fleet on many hosts has no such queue
// (NoticeCost and DialCost 0, the default).

// generator is the client side's work: connects first (a client that
// noticed its loss dials in the same run of its goroutine, before the
// generator gets to the next client's close), then noticing closes.
type generator struct {
	dials, notices fifo
	busy           bool
	cur            genJob
	// The generator's stalls, in simulated time: it runs until
	// stallAt, is descheduled until stallEnd, then runs again.
	stallAt, stallEnd time.Duration
}

type fifo struct {
	q    []genJob
	head int
}

func (f *fifo) push(j genJob) { f.q = append(f.q, j) }

func (f *fifo) pop() (genJob, bool) {
	if f.head == len(f.q) {
		f.q, f.head = f.q[:0], 0
		return genJob{}, false
	}
	j := f.q[f.head]
	f.q[f.head] = genJob{}
	f.head++
	return j, true
}

type genJob struct {
	c    *client
	k    *sock // jobConnected, jobReply: the connection
	kind uint8
}

// The client side's jobs. Every one is a goroutine of the lab's load
// generator running once: noticing a lost connection (read EOF, close),
// making a connect() (the same goroutine, at once: first in line),
// finishing a connect (connect() returned: write the PING) and reading
// the PING's answer (the lab records the client as back then). The last
// two cost what a notice does (one wake-up, one syscall); they wait in
// line with the notices, so during a kill's backlog of closes the lab's
// clients see their answers late, as its timelines show (no answers
// while the closes are noticed, then thousands at once). A SYN
// retransmit (jobSynRetx) waits with the connects and costs what one
// does: on loopback its handshake runs in the connecting CPU's softirq.
const (
	jobNotice uint8 = iota
	jobDial
	jobConnected
	jobReply
	jobSynRetx
)

// droppedDialShare is what a connect() whose SYN is dropped costs the
// client side, as a share of one whose handshake completes. On loopback
// the whole handshake runs on the connecting CPU (the SYN's arrival, the
// SYN-ACK, the final ACK and the server's new socket), but a SYN that
// finds the accept queue full is dropped at its arrival: measured on the
// lab's host (bench/simulate_clientcost.sh, 2026-12-03 02:22 and 02:40
// UTC, load 0.3 and 3.1, client on CPU 0 and valkey-server on CPU 1, six
// runs of 2,000 and 400 connects) 4.2-4.6 µs per dropped connect against
// 30-50 µs of the client's CPU per accepted one (its wall time: the
// handshake's softirq work runs partly in ksoftirqd on the same CPU;
// 0.13 is 4.4 over the quiet runs' 34). So a fleet
// redials faster while the queue is full — during a kill, the lab's
// busiest 100 ms of connects (1.4-1.6× the rate after it).
const droppedDialShare = 0.13

// refusedDialShare is what a dial to a server that is down (the RST
// answers the SYN: connect() fails with ECONNREFUSED) costs the client
// side, as a share of one that is accepted. The lab client's own dial
// (net.Dialer) pays its socket, connect, error and close either way:
// measured on the lab's host (bench/simulate_clientcost.sh ONLY=dials,
// client on CPU 0, valkey-server on CPU 1, 2026-12-03 06:36 UTC, load
// 5.7-6.1, three runs of 2,000 of each) 9.8-11.6 µs of the client's CPU
// per refused dial against 18.7-20.1 µs per accepted one: 0.51-0.58,
// 0.52 the median. Until 2026-12-03 07:00 UTC a refused dial cost what a
// raw connect() to a full queue does (0.13; a raw connect() refused:
// 5.9-6.2 µs), and the model's immediate clients redialled a restarting
// server 5.7x faster than the lab's (473,000/s against 77,570-88,950/s).
const refusedDialShare = 0.52

// synDropped tells whether a SYN sent now would be dropped: the accept
// queue full, the server down or the network blipped.
func (s *sim) synDropped() bool {
	return !s.up || s.blipped() || s.m.acceptFull(len(s.acceptQ))
}

// genRunMean is the generator's mean running stretch between stalls:
// the lab's kills alternated busy and quiet 100 ms buckets.
const genRunMean = 100 * time.Millisecond

// clientJob has the client side notice c's lost connection (then c's
// loop runs) or make c's connect(), through the generator's queue when
// it has a cost.
func (s *sim) clientJob(c *client, dial bool) {
	j := genJob{c: c, kind: jobNotice}
	if dial {
		j.kind = jobDial
	}
	s.clientRun(j)
}

// clientRun runs j now (a fleet on many hosts) or queues it on the
// load generator.
func (s *sim) clientRun(j genJob) {
	if s.m.NoticeCost == 0 && s.m.DialCost == 0 && s.m.ClientBurst <= 1 {
		s.doJob(j)
		return
	}
	if j.kind == jobDial || j.kind == jobSynRetx {
		s.gen.dials.push(j)
	} else {
		s.gen.notices.push(j)
	}
	if !s.gen.busy {
		// An idle generator wakes at once and runs a fresh stretch: it
		// stalls only while it has a backlog (the lab's dialer connects
		// came evenly once the kill's closes were handled).
		s.gen.stallEnd = s.now
		s.genStart()
	}
}

func (s *sim) doJob(j genJob) {
	switch j.kind {
	case jobDial:
		s.dial(j.c)
	case jobNotice:
		s.lose(j.c)
	case jobConnected:
		s.sendPing(j.k)
	case jobReply:
		s.reply(j.k)
	case jobSynRetx:
		s.synRetx(j.k)
	}
}

// genStart starts the next queued job, which takes its cost of running
// time. The generator stalls now and then (stretches of genRunMean
// running, (ClientBurst−1)·genRunMean stalled, each ±50%): work due
// during a stall waits for its end, so the client side's work, even a
// dialer's timer-driven connects, comes in bursts, its busiest 100 ms
// about ClientBurst× its mean, as in the lab. Its throughput when
// saturated is one job per ClientBurst × cost.
func (s *sim) genStart() {
	g := &s.gen
	j, ok := g.dials.pop()
	if !ok {
		j, ok = g.notices.pop()
	}
	if !ok {
		g.busy = false
		return
	}
	g.cur, g.busy = j, true
	cost := s.m.NoticeCost
	switch {
	case j.kind == jobDial && !s.up && s.m.RefusedDialCost > 0:
		cost = s.m.RefusedDialCost
	case j.kind == jobDial && !s.up:
		cost = time.Duration(float64(s.m.DialCost) * refusedDialShare)
	case (j.kind == jobDial || j.kind == jobSynRetx) && s.synDropped():
		cost = time.Duration(float64(s.m.DialCost) * droppedDialShare)
	case j.kind == jobDial || j.kind == jobSynRetx:
		cost = s.m.DialCost
	case (j.kind == jobConnected || j.kind == jobReply) && s.m.AnswerCost > 0:
		cost = s.m.AnswerCost
	}
	start := s.now
	if b := s.m.ClientBurst; b > 1 {
		s.genSchedule(start)
		if start >= g.stallAt { // descheduled: wait for the stall's end
			start = g.stallEnd
			s.genSchedule(start)
		}
		if start+cost > g.stallAt { // the job spans the next stall
			cost += g.stallEnd - g.stallAt
		}
	}
	s.at(start-s.now+cost, evGenDone, nil, nil)
}

// genSchedule advances the stall schedule so that the next stall ends
// after t.
func (s *sim) genSchedule(t time.Duration) {
	g := &s.gen
	b := s.m.ClientBurst
	for g.stallEnd <= t {
		g.stallAt = g.stallEnd + s.vary(genRunMean)
		g.stallEnd = g.stallAt + s.vary(time.Duration((b-1)*float64(genRunMean)))
	}
}

func (s *sim) genDone() {
	j := s.gen.cur
	s.gen.cur = genJob{}
	s.doJob(j)
	s.genStart()
}

// vary draws a duration of mean m, uniform within ±50%: the running
// stretches and stalls vary, but a handful of them make up a storm.
func (s *sim) vary(m time.Duration) time.Duration {
	return time.Duration((0.5 + s.rng.Float64()) * float64(m))
}
