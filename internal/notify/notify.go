package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/stormguard/stormguard/backoff"
)

// Alert is one state change to deliver.
type Alert struct {
	// Kind is "state" (a detector state change; the default) or "defuse"
	// (a mitigation applied or reverted: To is "applied" or "reverted").
	Kind    string    `json:"kind"`
	Time    time.Time `json:"time"`
	Target  string    `json:"target"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Verdict string    `json:"verdict"`
	// Event is the full state event as written to --events.
	Event json.RawMessage `json:"event,omitempty"`
}

// Options configure a Notifier.
type Options struct {
	// WebhookURL receives each Alert as a JSON POST.
	WebhookURL string
	// AlertmanagerURL is Alertmanager's base URL (…/api/v2/alerts is added).
	AlertmanagerURL string
	// QueueSize bounds pending notifications (256).
	QueueSize int
	// MaxAttempts per notification (6); backoff 200ms doubling to 10s, full jitter.
	MaxAttempts int
	// Rate limits deliveries per second (5, burst 10).
	Rate rate.Limit
	// Timeout per HTTP request (5s).
	Timeout time.Duration
	Client  *http.Client
	Logger  *slog.Logger
	// GeneratorURL is put in Alertmanager alerts (the agent's dashboard).
	GeneratorURL string
}

// Notifier queues and delivers alerts. Each receiver has its own queue,
// goroutine and rate limit: a webhook that hangs for its whole retry
// schedule (6 attempts × the timeout, ~30 s) must not hold the storm alert
// back from Alertmanager.
type Notifier struct {
	o       Options
	rx      []*receiver
	mu      sync.Mutex
	dropped uint64
	failed  uint64
	sent    uint64
	done    chan struct{}
}

// receiver is one destination's queue.
type receiver struct {
	kind string
	url  string
	body func(Alert) any
	q    chan Alert
	lim  *rate.Limiter
}

// New starts a notifier; it stops when ctx is done (after trying to flush
// what is queued for up to 2s).
func New(ctx context.Context, o Options) *Notifier {
	if o.QueueSize <= 0 {
		o.QueueSize = 256
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 6
	}
	if o.Rate <= 0 {
		o.Rate = 5
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{o: o, done: make(chan struct{})}
	add := func(kind, url string, body func(Alert) any) {
		n.rx = append(n.rx, &receiver{kind: kind, url: url, body: body,
			q: make(chan Alert, o.QueueSize), lim: rate.NewLimiter(o.Rate, 10)})
	}
	if o.WebhookURL != "" {
		add("webhook", o.WebhookURL, func(a Alert) any { return a })
	}
	if o.AlertmanagerURL != "" {
		add("alertmanager", o.AlertmanagerURL+"/api/v2/alerts", func(a Alert) any { return amAlerts(a, o.GeneratorURL) })
	}
	var wg sync.WaitGroup
	for _, r := range n.rx {
		wg.Add(1)
		go func() { defer wg.Done(); n.run(ctx, r) }()
	}
	go func() { wg.Wait(); close(n.done) }()
	return n
}

// Enabled reports whether any receiver is configured.
func (n *Notifier) Enabled() bool { return len(n.rx) > 0 }

// Notify queues a for every receiver; it never blocks.
func (n *Notifier) Notify(a Alert) {
	for _, r := range n.rx {
		n.enqueue(r, a)
	}
}

// enqueue puts a on r's queue, dropping r's oldest when it is full.
func (n *Notifier) enqueue(r *receiver, a Alert) {
	for {
		select {
		case r.q <- a:
			return
		default:
		}
		select {
		case <-r.q: // drop the oldest
			n.mu.Lock()
			n.dropped++
			n.mu.Unlock()
		default:
		}
	}
}

// Stats returns sent, failed and dropped counts, summed over receivers
// (one alert delivered to two receivers counts twice).
func (n *Notifier) Stats() (sent, failed, dropped uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.sent, n.failed, n.dropped
}

// Done is closed when every delivery goroutine has exited.
func (n *Notifier) Done() <-chan struct{} { return n.done }

func (n *Notifier) run(ctx context.Context, r *receiver) {
	for {
		select {
		case a := <-r.q:
			n.send(ctx, r, a)
		case <-ctx.Done():
			// Flush briefly so a SIGTERM does not eat the last alert.
			flush, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			for {
				select {
				case a := <-r.q:
					n.send(flush, r, a)
				default:
					return
				}
			}
		}
	}
}

func (n *Notifier) send(ctx context.Context, r *receiver, a Alert) {
	kind, url := r.kind, r.url
	b, err := json.Marshal(r.body(a))
	if err != nil {
		return
	}
	// After the k-th failure wait U(0, min(10s, 200ms·2^(k-1))).
	retry := backoff.FullJitter{Base: 200 * time.Millisecond, Cap: 10 * time.Second}
	for attempt := 1; attempt <= n.o.MaxAttempts; attempt++ {
		if err := r.lim.Wait(ctx); err != nil {
			return
		}
		err = n.post(ctx, url, b)
		if err == nil {
			n.mu.Lock()
			n.sent++
			n.mu.Unlock()
			return
		}
		n.o.Logger.Warn("alert delivery failed", "receiver", kind, "attempt", attempt, "err", err)
		if attempt == n.o.MaxAttempts {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(retry.Delay(attempt, 0, nil)):
		}
	}
	n.mu.Lock()
	n.failed++
	n.mu.Unlock()
}

func (n *Notifier) post(ctx context.Context, url string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, n.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.o.Client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}

// amAlert is Alertmanager's v2 postable alert.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt,omitempty"`
	EndsAt       time.Time         `json:"endsAt,omitempty"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// amAlerts maps a state change to Alertmanager alerts: entering surge or
// storm fires that alert (and resolves the other); calm or recovering
// resolves both, recovering keeping nothing firing.
func amAlerts(a Alert, gen string) []amAlert {
	if a.Kind == "defuse" {
		al := amAlert{
			Labels:       map[string]string{"alertname": "StormguardMitigationActive", "target": a.Target, "severity": "warning", "source": "stormguard"},
			Annotations:  map[string]string{"summary": a.Verdict},
			StartsAt:     a.Time,
			GeneratorURL: gen,
		}
		if a.To != "applied" {
			al.EndsAt = a.Time
		}
		return []amAlert{al}
	}
	mk := func(name, severity string, firing bool) amAlert {
		al := amAlert{
			Labels:       map[string]string{"alertname": name, "target": a.Target, "severity": severity, "source": "stormguard"},
			Annotations:  map[string]string{"summary": a.Verdict},
			StartsAt:     a.Time,
			GeneratorURL: gen,
		}
		if !firing {
			al.EndsAt = a.Time
		}
		return al
	}
	return []amAlert{
		mk("ValkeyConnectionStorm", "critical", a.To == "storm"),
		mk("ValkeyConnectionSurge", "warning", a.To == "surge"),
	}
}
