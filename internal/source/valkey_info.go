package source

import (
	"strconv"
	"strings"

	"github.com/stormguard/stormguard/internal/sample"
)

// infoSections are the INFO sections read on every collect. All are cheap
// on Valkey's main thread: counters and gauges it keeps anyway. Sections
// that walk data (keyspace per db is small, but commandstats, latencystats
// and errorstats grow with use) are left out on purpose.
// "cluster" is two short lines (cluster_enabled) on every server.
var infoSections = []string{"clients", "stats", "memory", "server", "replication", "cpu", "cluster"}

// valkeyFromInfo picks the storm-relevant fields out of a parsed INFO reply.
// A field that is missing or not a number stays nil: nil never means zero.
func valkeyFromInfo(m map[string]string) *sample.Valkey {
	u := func(k string) *uint64 {
		v, ok := m[k]
		if !ok {
			return nil
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil
		}
		return &n
	}
	f := func(k string) *float64 {
		v, ok := m[k]
		if !ok {
			return nil
		}
		x, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return nil
		}
		return &x
	}
	v := &sample.Valkey{
		ConnectedClients:         u("connected_clients"),
		MaxClients:               u("maxclients"),
		TotalConnectionsReceived: u("total_connections_received"),
		RejectedConnections:      u("rejected_connections"),
		ClusterConnections:       u("cluster_connections"),
		BlockedClients:           u("blocked_clients"),
		EvictedClients:           u("evicted_clients"),
		TotalErrorReplies:        u("total_error_replies"),
		ACLAccessDeniedAuth:      u("acl_access_denied_auth"),
		UsedCPUSys:               f("used_cpu_sys"),
		UsedCPUUser:              f("used_cpu_user"),
		UsedMemory:               u("used_memory"),
		// Cloned: the map's values are substrings of the whole INFO
		// reply, and a sample kept in the agent's rings would otherwise
		// pin all of it (~6 KB per sample: 70 MiB after 10 minutes at
		// 100 ms in the soak benchmark).
		Role:    strings.Clone(m["role"]),
		Version: strings.Clone(m["valkey_version"]),
	}
	if v.Version == "" {
		// Redis, and Valkey before 8.0 (which reports the Redis
		// compatibility version 7.2.4 here).
		v.Version = strings.Clone(m["redis_version"])
	}
	return v
}
