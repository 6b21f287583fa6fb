package simulate

import "time"

// The kernel's timer wheel (kernel/time/timer.c). TCP's retransmit
// timers — the client's SYN and data retransmits, the server's SYN-ACK
// retransmits of a request socket — are timer_list timers: a timer armed
// now for d fires on the first boundary of its wheel level's granularity
// after now + d, not at now + d. Level n of the wheel holds timers due
// within 63·8ⁿ jiffies and has a granularity of 8ⁿ jiffies; with HZ 250
// (the lab host's CONFIG_HZ, Debian's and Ubuntu's default) a 200 ms
// data retransmit lands on a 4 ms tick, a 1 s SYN retransmit on a 32 ms
// one, a 4 s one on a 256 ms one. So a storm's retransmits leave in
// batches: every SYN a kill's redials sent within the same 32 ms goes
// out again on the same tick, ~1 s later, and their packets are handled
// one after another in one softirq run, before Valkey's thread accepts
// more than a few: the SYNs of a batch all find the accept queue as it
// was and get their SYN-ACK, and their final ACKs then fill what room
// there is and overflow (the lab's recovery waves of exactly 129 at
// somaxconn 128). Time 0 of a simulation falls at a seeded point of the
// wheel (wheelPhase), as a kill falls anywhere between ticks.

// Wheel geometry (LVL_CLK_SHIFT, LVL_BITS) and levels (LVL_DEPTH 9).
const (
	wheelClkShift = 3
	wheelLvlSize  = 64
	wheelDepth    = 9
)

// wheelDelay is how long after now (simulated, with the wheel's phase)
// a kernel timer armed now with timeout d fires: calc_wheel_index's
// level from the timeout in jiffies, then calc_index's round-up to that
// level's next boundary. HZ 0 (or below) turns the wheel off: exact
// timeouts.
func wheelDelay(now, phase, d time.Duration, hz int) time.Duration {
	if hz <= 0 {
		return d
	}
	jiffy := time.Second / time.Duration(hz)
	clk := int64((now + phase) / jiffy)
	if now+phase < 0 && (now+phase)%jiffy != 0 {
		clk-- // floor: a restart's exit runs before t0 (sim.restart)
	}
	delta := int64((d + jiffy - 1) / jiffy) // the timeout in whole jiffies, as TCP arms it
	expires := clk + delta
	lvl := 0
	for lvl < wheelDepth-1 && delta >= int64(wheelLvlSize-1)<<(lvl*wheelClkShift) {
		lvl++
	}
	shift := lvl * wheelClkShift
	fire := ((expires >> shift) + 1) << shift
	return time.Duration(fire)*jiffy - phase - now
}
