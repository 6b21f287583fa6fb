package corpus

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/replay"
)

// Outcome is what the detector said about one recording, against its label.
type Outcome struct {
	Label  Label
	Events []detect.Event
	// Worst is the most severe state reached (calm < surge < storm).
	Worst detect.State
	// FalseSurges and FalseStorms count events into surge and storm on a
	// benign recording.
	FalseSurges, FalseStorms int
	// Reached: a storm recording reached storm.
	Reached bool
	// Latency is first storm event − first drop (the sample that carried
	// it); nil when the storm was missed.
	Latency *time.Duration
	// SurgeBeforeDrop: a surge event strictly before the first drop;
	// Lead is how long before it the first such event came (the warning
	// an operator had; nil without one).
	SurgeBeforeDrop bool
	Lead            *time.Duration
	// LeftEarly is the first event out of storm before the label's
	// RefusedUntil (nil: none): the detector called the storm over while
	// the clients were still failing to connect.
	LeftEarly *detect.Event

	t0 time.Time // first sample
}

// Failures lists what the outcome violates, given the latency bounds.
// Latency bounds are corpus-wide (percentiles), so they are checked by
// Summary, not here; a single latency above maxEach is listed.
func (o Outcome) Failures(maxEach time.Duration) []string {
	var f []string
	switch o.Label.Kind {
	case Benign:
		if o.FalseSurges > 0 || o.FalseStorms > 0 {
			f = append(f, fmt.Sprintf("false alarm: %d surge, %d storm event(s): %s", o.FalseSurges, o.FalseStorms, o.firstReasons()))
		}
	case Storm:
		if !o.Reached {
			f = append(f, fmt.Sprintf("missed: never reached storm (worst %s)", o.Worst))
			break
		}
		if o.Latency != nil && maxEach > 0 && *o.Latency > maxEach {
			f = append(f, fmt.Sprintf("late: storm %s after the first drop", o.Latency.Round(time.Millisecond)))
		}
		if o.Label.SlowBuild && !o.SurgeBeforeDrop {
			f = append(f, "slow build without a surge before the first drop")
		}
		if ev := o.LeftEarly; ev != nil {
			f = append(f, fmt.Sprintf("left storm early: %s→%s at +%.1fs (%s) while the clients kept failing until +%.1fs",
				ev.From, ev.To, ev.Time.Sub(o.start()).Seconds(), ev.Reason, o.Label.RefusedUntil.Sub(o.start()).Seconds()))
		}
	}
	return f
}

func (o Outcome) firstReasons() string {
	var r []string
	for _, ev := range o.Events {
		if ev.To == detect.Surge || ev.To == detect.Storm {
			r = append(r, fmt.Sprintf("%s→%s at +%.1fs (%s)", ev.From, ev.To, ev.Time.Sub(o.start()).Seconds(), ev.Reason))
		}
		if len(r) == 3 {
			break
		}
	}
	return strings.Join(r, "; ")
}

func (o Outcome) start() time.Time { return o.t0 }

// Score replays one recording with cfg and compares with its label.
func Score(e Entry, cfg detect.Config) (Outcome, error) {
	rec, err := replay.ReadCapture(e.Path)
	if err != nil {
		return Outcome{}, err
	}
	res := replay.Run(cfg, rec)
	o := Outcome{Label: e.Label, Events: res.Events}
	for _, r := range rec.Records {
		if r.Sample != nil {
			o.t0 = r.Time
			break
		}
	}
	for _, ev := range res.Events {
		if ev.From == detect.Storm && o.LeftEarly == nil && e.Label.RefusedUntil != nil && ev.Time.Before(*e.Label.RefusedUntil) {
			o.LeftEarly = &ev
		}
		switch ev.To {
		case detect.Surge:
			if o.Worst < detect.Surge {
				o.Worst = detect.Surge
			}
			if e.Label.Kind == Benign {
				o.FalseSurges++
			}
			if e.Label.FirstDrop != nil && ev.Time.Before(*e.Label.FirstDrop) {
				if !o.SurgeBeforeDrop {
					l := e.Label.FirstDrop.Sub(ev.Time)
					o.Lead = &l
				}
				o.SurgeBeforeDrop = true
			}
		case detect.Storm:
			o.Worst = detect.Storm
			if e.Label.Kind == Benign {
				o.FalseStorms++
			}
			if !o.Reached && e.Label.Kind == Storm {
				o.Reached = true
				l := ev.Time.Sub(*e.Label.FirstDrop)
				o.Latency = &l
			}
		}
	}
	return o, nil
}

// Summary aggregates outcomes.
type Summary struct {
	Outcomes []Outcome
	// Confusion[kind][worst state] counts recordings.
	Benign, Storms [3]int // index: 0 calm, 1 surge (at worst), 2 storm
	// P50, P95 of first drop → storm over the storms that reached storm.
	P50, P95  time.Duration
	Latencies int
}

// Summarize computes the confusion table and latency percentiles
// (nearest rank).
func Summarize(outs []Outcome) Summary {
	s := Summary{Outcomes: outs}
	var lat []time.Duration
	for _, o := range outs {
		w := int(o.Worst)
		if w > 2 {
			w = 2
		}
		if o.Label.Kind == Benign {
			s.Benign[w]++
		} else {
			s.Storms[w]++
			if o.Latency != nil {
				lat = append(lat, *o.Latency)
			}
		}
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	s.Latencies = len(lat)
	if len(lat) > 0 {
		s.P50 = lat[rank(len(lat), 0.50)]
		s.P95 = lat[rank(len(lat), 0.95)]
	}
	return s
}

func rank(n int, p float64) int {
	r := int(math.Ceil(p*float64(n))) - 1
	return max(0, min(r, n-1))
}

// WriteTable prints the per-recording table and the confusion table.
func (s Summary) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RECORDING\tKIND\tSAMPLES\tWORST\tEVENTS\tFIRST DROP→STORM\tSURGE BEFORE DROP\tVERDICT")
	for _, o := range s.Outcomes {
		lat, early := "-", "-"
		if o.Latency != nil {
			lat = fmt.Sprintf("%d ms", o.Latency.Milliseconds())
		}
		if o.Label.Kind == Storm {
			early = fmt.Sprint(o.SurgeBeforeDrop)
			if o.Lead != nil {
				early += fmt.Sprintf(", %.1f s ahead", o.Lead.Seconds())
			}
			if o.Label.SlowBuild {
				early += " (slow build)"
			}
		}
		verdict := "ok"
		if f := o.Failures(0); len(f) > 0 {
			verdict = strings.Join(f, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\n", o.Label.Name, o.Label.Kind, o.Label.Samples, o.Worst, len(o.Events), lat, early, verdict)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\nconfusion (recordings by the most severe state the detector reached):\n")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "label\\detector\tcalm\tsurge\tstorm")
	fmt.Fprintf(tw, "benign (%d)\t%d\t%d\t%d\n", s.Benign[0]+s.Benign[1]+s.Benign[2], s.Benign[0], s.Benign[1], s.Benign[2])
	fmt.Fprintf(tw, "storm (%d)\t%d\t%d\t%d\n", s.Storms[0]+s.Storms[1]+s.Storms[2], s.Storms[0], s.Storms[1], s.Storms[2])
	_ = tw.Flush()
	if s.Latencies > 0 {
		fmt.Fprintf(w, "first drop → storm event over %d storms: p50 %d ms, p95 %d ms\n", s.Latencies, s.P50.Milliseconds(), s.P95.Milliseconds())
	}
}
