package serve

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/stormguard/stormguard/internal/clientlist"
	"github.com/stormguard/stormguard/internal/detect"
)

func TestAttribution(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	// Seven prefixes, so the export cap of five shows.
	var addrs []netip.Addr
	for i := range 7 {
		for range 7 - i {
			addrs = append(addrs, netip.MustParseAddr(fmt.Sprintf("10.0.%d.1", i)))
		}
	}
	attr := detect.Attribute(addrs, 10)
	snap := clientlist.GroupClients([]clientlist.Client{{LibName: "valkey-py", LibVer: "6.1", Age: 2, Idle: 0}}, t0, 10*time.Second, 10)
	x := Attribution{ClusterNodeID: "abc123", Sources: &detect.SourceAttribution{Time: t0, Basis: "new_sockets", Attribution: attr},
		Clients: &ClientGroups{AgeS: 3, Snapshot: &snap}}

	h := NewHub([]string{"valkey"}, 10, 10)
	h.SetAttribution("127.0.0.1:6379", x)
	h.Publish(testSample(t0), State{Name: "storm", Code: 2}, "replica", nil)
	// Attribution survive the next publish.
	h.Publish(testSample(t0.Add(time.Second)), State{Name: "storm", Code: 2}, "replica", nil)
	c := newCollector(h, "test")
	want := `
# HELP stormguard_target_info ` + targetInfoHelp + `
# TYPE stormguard_target_info gauge
stormguard_target_info{cluster_node_id="abc123",role="replica",target="127.0.0.1:6379"} 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "stormguard_target_info"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(c, "stormguard_top_source_share"); n != topSourcesExported {
		t.Errorf("%d top-source series, want %d", n, topSourcesExported)
	}
	// Calm: no per-prefix series at all.
	h.Publish(testSample(t0.Add(2*time.Second)), State{Name: "calm", Code: 0}, "replica", nil)
	if n := testutil.CollectAndCount(c, "stormguard_top_source_share", "stormguard_top_source_new_connections"); n != 0 {
		t.Errorf("%d top-source series while calm, want 0", n)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint %s: %s", p.Metric, p.Text)
	}

	raw, err := json.Marshal(h.Views()[0])
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	json.Unmarshal(raw, &got)
	if got["cluster_node_id"] != "abc123" || got["sources"] == nil || got["clients"] == nil || got["role"] != "replica" {
		t.Fatalf("state view lacks the attribution: %s", raw)
	}
	// A note without a snapshot has no group fields.
	only, _ := json.Marshal(ClientGroups{Note: "CLIENT LIST refused: NOPERM"})
	if string(only) != `{"age_s":0,"note":"CLIENT LIST refused: NOPERM"}` {
		t.Errorf("note-only client groups: %s", only)
	}
}
