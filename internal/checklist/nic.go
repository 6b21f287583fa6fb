package checklist

import (
	"fmt"
	"sort"
	"strings"
)

// NICCounterNames are the AWS ENA allowance counters (ethtool -S).
var NICCounterNames = []string{
	"bw_in_allowance_exceeded", "bw_out_allowance_exceeded", "pps_allowance_exceeded",
	"conntrack_allowance_exceeded", "linklocal_allowance_exceeded", "conntrack_allowance_available",
}

// nicConntrackAvailableLow is the conntrack_allowance_available below which
// a connection storm can exhaust the instance's tracked-connection allowance.
const nicConntrackAvailableLow = 10000

func nicRules() []Rule { return []Rule{ruleNICAllowance, ruleNICConntrackAvailable} }

func ruleNICAllowance(f *Facts) []Finding {
	const id = "nic-allowance-exceeded"
	if f.NIC == nil {
		why := f.NICErr
		if why == "" {
			why = "not read"
		}
		return []Finding{newFinding(AreaNIC, id, Info, "NIC allowance counters: not available", why, "")}
	}
	var hit, all []string
	for _, k := range NICCounterNames {
		v, ok := f.NIC.Stats[k]
		if !ok || !strings.HasSuffix(k, "_exceeded") {
			continue
		}
		all = append(all, fmt.Sprintf("%s %d", k, v))
		if v > 0 {
			hit = append(hit, fmt.Sprintf("%s %d", k, v))
		}
	}
	ifs := strings.Join(f.NIC.Interfaces, ",")
	if len(hit) > 0 {
		sort.Strings(hit)
		return []Finding{newFinding(AreaNIC, id, Warning, "the cloud NIC has shaped or dropped packets",
			fmt.Sprintf("%s on %s since the driver loaded: packets were queued or dropped by the hypervisor, invisible to kernel counters", strings.Join(hit, ", "), ifs),
			"spread connections over more instances or a larger instance type; cut connection churn (conntrack_allowance) and reuse connections")}
	}
	return []Finding{newFinding(AreaNIC, id, OK, "the cloud NIC has not exceeded its allowances",
		strings.Join(all, ", ")+" on "+ifs, "")}
}

func ruleNICConntrackAvailable(f *Facts) []Finding {
	const id = "nic-conntrack-allowance-low"
	if f.NIC == nil {
		return nil
	}
	v, ok := f.NIC.Stats["conntrack_allowance_available"]
	if !ok {
		return nil
	}
	ev := fmt.Sprintf("conntrack_allowance_available %d on %s", v, strings.Join(f.NIC.Interfaces, ","))
	if v < nicConntrackAvailableLow {
		return []Finding{newFinding(AreaNIC, id, Warning, "few tracked connections left on the cloud NIC",
			ev+fmt.Sprintf(" (< %d): new connections will be dropped by the hypervisor once it reaches 0", nicConntrackAvailableLow),
			"cut connection churn and idle connections, or move to a larger instance type; see the security-group tcpEstablishedTimeout")}
	}
	return []Finding{newFinding(AreaNIC, id, OK, "tracked-connection allowance has room", ev, "")}
}
