//go:build linux

package lab

import (
	"os/exec"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationRedisPy runs a kill storm with redis-py (Debian's
// python3-redis, default pool and retry settings), 40 clients in 4
// instances (Python processes): every client completes PINGs again, and
// the connects are counted in the kernel.
func TestIntegrationRedisPy(t *testing.T) {
	sandboxtest.Require(t)
	if err := exec.Command(redisPyPython(), "-c", "import redis").Run(); err != nil {
		sandboxtest.SkipOrFail(t, "python3-redis is not installed (scripts/install-deps.sh)")
	}
	const clients = 40
	res := runLab(t, Config{Spawn: &Spawn{}, Clients: clients, Instances: 4, Strategy: RedisPyStrategy, Scenario: "kill",
		Hold: 500 * time.Millisecond, Settle: 200 * time.Millisecond, Duration: 20 * time.Second})
	checkRecovered(t, res, clients)
	if res.KilledClients == nil || *res.KilledClients < 4 {
		t.Errorf("killed %v: the instances' pooled connections should have been killed", res.KilledClients)
	}
}
