package defuse

import "github.com/stormguard/stormguard/internal/procnet"

// The actuators read and write the target namespace's sysctls and /proc/net
// files through procnet, the one reader of those for the project; these
// short names keep the actuator code readable.
var (
	readSysctl  = procnet.ReadSysctl
	writeSysctl = procnet.WriteSysctl
	readNetFile = procnet.ReadFile
)
