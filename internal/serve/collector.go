package serve

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// collector builds const metrics from the hub's latest samples; Collect
// does no I/O, so a scrape answers even while Valkey or the kernel is slow.
type collector struct {
	version     string
	hub         *Hub
	descs       []*prometheus.Desc
	state       *prometheus.Desc
	sourceUp    *prometheus.Desc
	sourceDur   *prometheus.Desc
	sampleTS    *prometheus.Desc
	samples     *prometheus.Desc
	info        *prometheus.Desc
	wait        *prometheus.Desc
	attribution attributionDescs
}

func newCollector(h *Hub, version string) *collector {
	c := &collector{hub: h, version: version}
	for _, m := range sampleMetrics {
		c.descs = append(c.descs, prometheus.NewDesc(m.Name, m.Help, []string{"target"}, nil))
	}
	c.state = prometheus.NewDesc("stormguard_storm_state", "Detector state per target: 0 calm, 1 surge (early warning), 2 storm (connections dropped or refused now), 3 recovering.", []string{"target"}, nil)
	c.sourceUp = prometheus.NewDesc("stormguard_source_up", "1 if the signal source answered in the last sample, 0 if it was unavailable or timed out.", []string{"target", "source"}, nil)
	c.sourceDur = prometheus.NewDesc("stormguard_source_duration_seconds", "How long the signal source took in the last sample.", []string{"target", "source"}, nil)
	c.sampleTS = prometheus.NewDesc("stormguard_last_sample_timestamp_seconds", "Unix time of the target's latest sample.", []string{"target"}, nil)
	c.samples = prometheus.NewDesc("stormguard_samples_total", "Samples taken of the target since the agent started.", []string{"target"}, nil)
	c.info = prometheus.NewDesc("stormguard_build_info", "Always 1; labelled with the agent's version.", []string{"version"}, nil)
	c.wait = prometheus.NewDesc("stormguard_accept_wait_seconds", acceptWaitHelp, []string{"target"}, nil)
	c.attribution = newAttributionDescs()
	return c
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
	for _, d := range []*prometheus.Desc{c.state, c.sourceUp, c.sourceDur, c.sampleTS, c.samples, c.info, c.wait, c.attribution.info, c.attribution.topCount, c.attribution.topShare} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, c.version)
	c.hub.mu.RLock()
	defer c.hub.mu.RUnlock()
	for name, e := range c.hub.targets {
		s := e.view.Sample
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, float64(e.view.Code), name)
		ch <- prometheus.MustNewConstMetric(c.samples, prometheus.CounterValue, float64(e.samples), name)
		c.attribution.collect(ch, name, &e.view)
		if s == nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.sampleTS, prometheus.GaugeValue, float64(s.Time.UnixNano())/float64(time.Second), name)
		for i, m := range sampleMetrics {
			if v := m.Get(s); v != nil {
				ch <- prometheus.MustNewConstMetric(c.descs[i], m.Type, *v, name)
			}
		}
		if h := s.AcceptWaitHist; h != nil && len(h.Bounds) == len(h.Counts) {
			buckets := make(map[float64]uint64, len(h.Bounds))
			for i, b := range h.Bounds {
				buckets[b] = h.Counts[i]
			}
			ch <- prometheus.MustNewConstHistogram(c.wait, h.Count, h.Sum, buckets, name)
		}
		for _, src := range c.hub.sources {
			up := 0.0
			if _, failed := s.Errors[src]; !failed {
				if _, ran := s.SourceDurations[src]; ran {
					up = 1
				}
			}
			ch <- prometheus.MustNewConstMetric(c.sourceUp, prometheus.GaugeValue, up, name, src)
			if ms, ok := s.SourceDurations[src]; ok {
				ch <- prometheus.MustNewConstMetric(c.sourceDur, prometheus.GaugeValue, ms/1000, name, src)
			}
		}
	}
}
