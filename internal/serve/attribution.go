package serve

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/stormguard/stormguard/internal/clientlist"
	"github.com/stormguard/stormguard/internal/detect"
	"github.com/stormguard/stormguard/internal/sample"
)

// Attribution is what the agent learnt beside the sample about who the
// target is (cluster node id) and who connects to it (kernel-side sources,
// CLIENT LIST groups); it appears
// flattened in each target of /api/v1/state and in the SSE "sample" events.
type Attribution struct {
	// ClusterNodeID is CLUSTER MYID when cluster mode is on.
	ClusterNodeID string `json:"cluster_node_id,omitempty"`
	// Sources is the latest kernel-side attribution of new connections
	// (socket dumps taken while the target was not calm), with its age.
	Sources *detect.SourceAttribution `json:"sources,omitempty"`
	// Clients is the latest CLIENT LIST grouped by library and IP, taken
	// only while calm; AgeS is its age at publication and Note says why it
	// may be old ("taken while calm; target is in storm now") or missing.
	Clients *ClientGroups `json:"clients,omitempty"`
}

// ClientGroups is a grouped CLIENT LIST with its age.
type ClientGroups struct {
	AgeS float64 `json:"age_s"`
	Note string  `json:"note,omitempty"`
	// Snapshot is nil when only a note exists (CLIENT LIST refused);
	// its fields are then absent from the JSON.
	*clientlist.Snapshot
}

// SetAttribution replaces a target's attribution; they are kept across Publish calls
// and shown from the next one (call it just before Publish).
func (h *Hub) SetAttribution(target string, x Attribution) {
	h.mu.Lock()
	e := h.targets[target]
	if e == nil {
		e = &targetEntry{recent: make([]*sample.Sample, 0, h.maxRecent)}
		e.view.Target = target
		h.targets[target] = e
	}
	e.view.Attribution = x
	h.mu.Unlock()
}

// Metrics of the attribution. Their help texts are shared with docs/metrics.md.
var (
	targetInfoHelp = "Always 1; labels say the target's replication role (primary, replica) and cluster node id (empty outside cluster mode), as INFO last gave them: a sample whose INFO was late keeps them (absent until the first INFO)."
	topCountHelp   = "New connections from one source prefix (/24, /64) in the episode's latest socket-dump attribution that found any; top 5 prefixes, exported only while the target is not calm. Labels: target, prefix."
	topShareHelp   = "Share (0–1) of new connections from one source prefix in the episode's latest socket-dump attribution that found any; top 5 prefixes, only while the target is not calm. Labels: target, prefix."
)

// topSourcesExported bounds the prefixes exported per target.
const topSourcesExported = 5

type attributionDescs struct {
	info, topCount, topShare *prometheus.Desc
}

func newAttributionDescs() attributionDescs {
	return attributionDescs{
		info:     prometheus.NewDesc("stormguard_target_info", targetInfoHelp, []string{"target", "role", "cluster_node_id"}, nil),
		topCount: prometheus.NewDesc("stormguard_top_source_new_connections", topCountHelp, []string{"target", "prefix"}, nil),
		topShare: prometheus.NewDesc("stormguard_top_source_share", topShareHelp, []string{"target", "prefix"}, nil),
	}
}

// collect emits a target's attribution metrics. Source prefixes are exported
// only while the target is not calm, so calm hosts carry no per-client
// series at all, and at most five per target during an episode.
func (d attributionDescs) collect(ch chan<- prometheus.Metric, target string, v *TargetView) {
	if v.Role != "" || v.ClusterNodeID != "" {
		ch <- prometheus.MustNewConstMetric(d.info, prometheus.GaugeValue, 1, target, v.Role, v.ClusterNodeID)
	}
	if v.Sources == nil || v.Code == 0 {
		return
	}
	for i, src := range v.Sources.TopPrefixes {
		if i >= topSourcesExported {
			break
		}
		ch <- prometheus.MustNewConstMetric(d.topCount, prometheus.GaugeValue, float64(src.Count), target, src.Prefix)
		ch <- prometheus.MustNewConstMetric(d.topShare, prometheus.GaugeValue, src.Share, target, src.Prefix)
	}
}
