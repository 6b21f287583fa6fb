package main

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stormguard/stormguard/internal/simulate"
)

// runBackoffCLI returns stdout, the exit code and the error.
func runBackoffCLI(t *testing.T, args ...string) (string, int, error) {
	t.Helper()
	r := execCLI(t, args...)
	return r.Stdout, r.Code, r.Err
}

type lines struct {
	attempts []attemptStats
	buckets  []bucketCount
}

func parseJSONLines(t *testing.T, s string) lines {
	t.Helper()
	var l lines
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		if _, ok := m["attempt"]; ok {
			for _, k := range []string{"attempt", "min_ms", "mean_ms", "max_ms", "p50_ms", "p99_ms"} {
				if _, ok := m[k]; !ok {
					t.Fatalf("attempt line %q lacks %q", sc.Text(), k)
				}
			}
			var a attemptStats
			_ = json.Unmarshal(sc.Bytes(), &a)
			l.attempts = append(l.attempts, a)
			continue
		}
		var b bucketCount
		if err := json.Unmarshal(sc.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		if _, ok := m["bucket_start_ms"]; !ok {
			t.Fatalf("line %q is neither an attempt nor a bucket", sc.Text())
		}
		l.buckets = append(l.buckets, b)
	}
	return l
}

func TestBackoffGLIDEJSON(t *testing.T) {
	out, code, err := runBackoffCLI(t, "backoff", "--strategy", "glide", "--attempts", "7", "--samples", "5000", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %v", code, err)
	}
	l := parseJSONLines(t, out)
	if len(l.attempts) != 7 || len(l.buckets) != 0 {
		t.Fatalf("%d attempt lines, %d bucket lines; want 7, 0", len(l.attempts), len(l.buckets))
	}
	for _, a := range l.attempts {
		step := 100.0 * float64(int(1)<<min(a.Attempt, 5))
		j := 0.2
		if a.Attempt > 5 {
			j = 0
		}
		if a.MinMS < step*(1-j) || a.MaxMS > step*(1+j) || a.MinMS > a.P50MS || a.P50MS > a.P99MS || a.P99MS > a.MaxMS {
			t.Errorf("attempt %d: %+v outside %.0f ±%.0f%% or out of order", a.Attempt, a, step, j*100)
		}
		if d := a.MeanMS/step - 1; d > 0.02 || d < -0.02 {
			t.Errorf("attempt %d: mean %.1f, want %.0f ±2%%", a.Attempt, a.MeanMS, step)
		}
	}
}

func TestBackoffEdgeCases(t *testing.T) {
	// retries 0 underflows in released GLIDE: rejected, exit 2.
	if r := execCLI(t, "backoff", "--retries", "0"); r.Code != 2 || !strings.Contains(r.Msg, "--retries") {
		t.Errorf("--retries 0: exit %d, %q; want 2 naming --retries", r.Code, r.Msg)
	}
	// jitter 0: no jitter at all.
	out, code, _ := runBackoffCLI(t, "backoff", "--jitter-percent", "0", "--attempts", "3", "--samples", "100", "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, a := range parseJSONLines(t, out).attempts {
		if want := 100.0 * float64(int(1)<<a.Attempt); a.MinMS != want || a.MaxMS != want {
			t.Errorf("jitter 0, attempt %d: %+v, want %.0fms flat", a.Attempt, a, want)
		}
	}
	// jitter 100: U(0, 2)×.
	out, code, _ = runBackoffCLI(t, "backoff", "--jitter-percent", "100", "--attempts", "1", "--samples", "20000", "--json")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	a := parseJSONLines(t, out).attempts[0]
	if a.MinMS < 0 || a.MinMS > 2 || a.MaxMS > 400 || a.MaxMS < 398 {
		t.Errorf("jitter 100, attempt 1: %+v, want spread over [0, 400)", a)
	}
}

func TestBackoffDeterministic(t *testing.T) {
	args := []string{"backoff", "--strategy", "decorrelated", "--base", "20ms", "--cap", "1s", "--attempts", "5", "--samples", "300", "--seed", "9", "--clients", "50", "--outage", "2s"}
	a, _, _ := runBackoffCLI(t, args...)
	b, _, _ := runBackoffCLI(t, args...)
	if a != b || a == "" {
		t.Fatal("same seed gave different output")
	}
	c, _, _ := runBackoffCLI(t, append(args[:len(args)-6:len(args)-6], "--seed", "10", "--clients", "50", "--outage", "2s")...)
	if c == a {
		t.Fatal("a different seed gave the same output")
	}
}

// TestBackoffFleet: GLIDE's immediate first reconnect puts the whole fleet
// in bucket 0; with a 1s outage each client needs exactly 4 attempts
// (t=0, ≈200ms, ≈600ms, ≥1120ms).
func TestBackoffFleet(t *testing.T) {
	out, code, err := runBackoffCLI(t, "backoff", "--clients", "1000", "--outage", "1s", "--attempts", "1", "--samples", "10", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %v", code, err)
	}
	l := parseJSONLines(t, out)
	if len(l.buckets) == 0 || l.buckets[0].Attempts != 1000 {
		t.Fatalf("bucket 0 = %+v, want all 1000 clients", l.buckets)
	}
	total := 0
	for i, b := range l.buckets {
		if b.StartMS != int64(i)*100 {
			t.Fatalf("bucket %d starts at %d ms", i, b.StartMS)
		}
		total += b.Attempts
	}
	if total != 4000 {
		t.Errorf("total attempts %d, want 4000", total)
	}
	if last := l.buckets[len(l.buckets)-1].StartMS; last < 1100 || last > 2000 {
		t.Errorf("last attempt in bucket %d ms, want just after the 1s outage", last)
	}
	// Full jitter: every client still ends with an attempt at or after the
	// outage, and the first jittered retries land within the first base.
	out, _, _ = runBackoffCLI(t, "backoff", "--strategy", "full-jitter", "--clients", "1000", "--outage", "1s", "--attempts", "1", "--samples", "10", "--json")
	fj := parseJSONLines(t, out).buckets
	if fj[0].Attempts < 2000 || fj[0].Attempts > 2000+500 {
		t.Errorf("full jitter bucket 0 = %d, want 1000 immediate + 1000 retries within U(0,100ms) (+ a few third attempts)", fj[0].Attempts)
	}
	if last := fj[len(fj)-1].StartMS; last < 1000 {
		t.Errorf("full jitter last bucket %d ms, before the outage ends", last)
	}
}

func TestBackoffTable(t *testing.T) {
	out, code, _ := runBackoffCLI(t, "backoff", "--strategy", "grpc", "--attempts", "3", "--samples", "100", "--clients", "10", "--outage", "3s")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"ATTEMPT", "MIN_MS", "MEAN_MS", "MAX_MS", "1000.0", "BUCKET_MS", "fleet: 10 clients"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestBackoffUsageErrors(t *testing.T) {
	tests := [][]string{
		{"backoff", "--strategy", "nope"},
		{"backoff", "--jitter-percent", "101"},
		{"backoff", "--retries", "-1"},
		{"backoff", "--attempts", "-3"},
		{"backoff", "--attempts", "0"},
		{"backoff", "--samples", "-1"},
		{"backoff", "--clients", "-5"},
		{"backoff", "--outage", "2s"},
		{"backoff", "--clients", "5", "--outage", "-1s"},
		{"backoff", "--base", "1s"},
		{"backoff", "--strategy", "full-jitter", "--retries", "3"},
		{"backoff", "--strategy", "full-jitter", "--base", "2s", "--cap", "1s"},
		{"backoff", "--strategy", "grpc", "--base", "-1s"},
		{"backoff", "--strategy", "full-jitter", "--base", "-1s"},
		{"backoff", "--strategy", "decorrelated", "--cap", "-1s"},
		{"backoff", "--attempts", "x"},
		{"backoff", "extra-arg"},
		{"backoff", "--somaxconn", "128"},
		{"backoff", "--accept-rate", "5000"},
		{"backoff", "--fleet", "-1"},
		{"backoff", "--fleet", "0"},
		{"backoff", "--fleet", "100", "--attempts", "3"},
		{"backoff", "--fleet", "100", "--clients", "3"},
		{"backoff", "--fleet", "100", "--accept-rate", "5000", "--calibrate", "x.json"},
		{"backoff", "--fleet", "100", "--calibrate", "/nonexistent.json"},
		{"backoff", "--fleet", "100", "--scenario", "churn"},
		{"backoff", "--fleet", "100", "--strategy", "grpc"},
		{"backoff", "--fleet", "100", "--accept-rate", "99999999"},
		{"backoff", "--fleet", "100", "--period", "0s"},
		{"backoff", "--fleet", "100", "--accept-rate", "NaN"},
		{"backoff", "--fleet", "100", "--accept-rate", "Inf"},
		{"backoff", "--fleet", "100", "--somaxconn", "0"},
		{"backoff", "--fleet", "2000000"},
	}
	for _, args := range tests {
		_, code, err := runBackoffCLI(t, args...)
		if code != 2 || err == nil {
			t.Errorf("%v: exit %d (%v), want 2", args, code, err)
			continue
		}
		if strings.Contains(err.Error(), "cap 0s") {
			t.Errorf("%v: %q shows an unset --cap as 0s", args, err)
		}
		if msg := oneLine(err.Error()); msg == "" || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %q is not one line", args, err)
		}
	}
}

func TestBackoffHelp(t *testing.T) {
	out, code, _ := runBackoffCLI(t, "backoff", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"Examples:", "stormguard backoff --strategy glide", "--clients", "bucket_start_ms", "min_ms",
		"--fleet", "recover fastest without overflowing", "--calibrate", "recommended"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// TestBackoffFleetAdvice: --fleet ranks simulated settings and names a
// recommendation that is the first of the ranking, the best policy
// without the dialer, and the user's own policy when given.
func TestBackoffFleetAdvice(t *testing.T) {
	out, code, err := runBackoffCLI(t, "backoff", "--fleet", "600", "--accept-rate", "4000", "--somaxconn", "128",
		"--strategy", "glide", "--factor", "500", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %v", code, err)
	}
	type row struct {
		Setting         string `json:"setting"`
		Dialer          bool   `json:"dialer"`
		Recovered       bool   `json:"recovered"`
		ListenOverflows uint64 `json:"listen_overflows"`
		TimeToRecoverMS *int64 `json:"time_to_recover_ms"`
		Clients         int    `json:"clients"`
	}
	var got struct {
		Fleet       int   `json:"fleet"`
		Recommended row   `json:"recommended"`
		BestPolicy  *row  `json:"best_policy"`
		Yours       *row  `json:"yours"`
		Advice      []row `json:"advice"`
		Model       struct {
			Somaxconn int `json:"somaxconn"`
		} `json:"model"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got.Fleet != 600 || got.Model.Somaxconn != 128 || len(got.Advice) < 8 {
		t.Fatalf("fleet %d, somaxconn %d, %d rows", got.Fleet, got.Model.Somaxconn, len(got.Advice))
	}
	if got.Recommended.Setting != got.Advice[0].Setting {
		t.Errorf("recommended %q is not the first of the ranking (%q)", got.Recommended.Setting, got.Advice[0].Setting)
	}
	if got.BestPolicy == nil || got.BestPolicy.Dialer || strings.HasPrefix(got.BestPolicy.Setting, "yours") {
		t.Errorf("best_policy = %+v, want a setting without the dialer", got.BestPolicy)
	}
	if got.Yours == nil || !strings.Contains(got.Yours.Setting, "factor 500") {
		t.Errorf("yours = %+v, want the given glide policy", got.Yours)
	}
	// Ranked by class: a row never follows one with more overflows of a
	// worse class (unrecovered last).
	class := func(r row) int {
		switch {
		case !r.Recovered:
			return 4
		case r.ListenOverflows > uint64(r.Clients)/10:
			return 3
		case r.ListenOverflows > uint64(r.Clients)/100:
			return 2
		case r.ListenOverflows > 0:
			return 1
		}
		return 0
	}
	for i := 1; i < len(got.Advice); i++ {
		if class(got.Advice[i]) < class(got.Advice[i-1]) {
			t.Errorf("%q (class %d) ranked after %q (class %d)", got.Advice[i].Setting, class(got.Advice[i]),
				got.Advice[i-1].Setting, class(got.Advice[i-1]))
		}
	}
	text, code, _ := runBackoffCLI(t, "backoff", "--fleet", "300", "--accept-rate", "4000")
	if code != 0 || !strings.Contains(text, "recommended") || !strings.Contains(text, "every setting, best first") {
		t.Errorf("text output (exit %d):\n%s", code, text)
	}
}

// TestWriteAdviceNotSimulated: a candidate stopped as a runaway (immediate
// against a restarting server) is a row of dashes with the reason below
// the table, not a row of zeros that would read as "no overflows".
func TestWriteAdviceNotSimulated(t *testing.T) {
	ms := int64(1600)
	rows := []simulate.Advice{
		{Setting: "glide", Result: &simulate.Result{Clients: 10, Recovered: true, TimeToRecoverMS: &ms, ConnectAttempts: 40}},
		{Setting: "immediate", NotSimulated: simulate.ErrRunaway.Error(), Result: &simulate.Result{Clients: 10}},
	}
	var b strings.Builder
	if err := writeAdvice(&b, rows); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	var imm string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasSuffix(strings.TrimSpace(l), "-") && strings.Contains(l, "immediate") {
			imm = l
		}
	}
	if imm == "" || strings.Contains(imm, " 0 ") || !strings.Contains(out, "immediate: not simulated to the end") {
		t.Errorf("table:\n%s", out)
	}
	if got := outcome(rows[1]); !strings.HasPrefix(got, "not simulated") {
		t.Errorf("outcome = %q", got)
	}
}
