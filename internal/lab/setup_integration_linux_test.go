//go:build linux

package lab

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

// TestIntegrationSetup: for each --setup, the lab's own client and both Go
// libraries present themselves to Valkey as the setup says (CLIENT LIST's
// resp, lib-name, user and name of their connection).
func TestIntegrationSetup(t *testing.T) {
	sandboxtest.Require(t)
	for _, setup := range Setups {
		t.Run(setup, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r := prepareRun(ctx, t, Config{Spawn: &Spawn{}, Setup: setup, Clients: 1, Strategy: "immediate", Scenario: "kill"})
			clients := map[string]func() (func(), error){
				"lab": func() (func(), error) {
					rc, err := r.open(ctx, r.timedDial(0))
					if err != nil {
						return nil, err
					}
					return func() { rc.c.Close() }, rc.ping(5 * time.Second)
				},
				"go-redis": func() (func(), error) {
					p, _ := newGoRedis(ctx, r, r.countedDial(0))
					return p.close, p.ping(ctx)
				},
				"valkey-go": func() (func(), error) {
					p, err := newValkeyGo(ctx, r, r.countedDial(0))
					if err != nil {
						return nil, err
					}
					return p.close, p.ping(ctx)
				},
			}
			for name, open := range clients {
				closeFn, err := open()
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				list, err := r.adm.clientList(ctx)
				closeFn()
				if err != nil {
					t.Fatal(err)
				}
				var line string
				for _, l := range strings.Split(list, "\n") {
					if strings.Contains(l, "cmd=ping") {
						line = l
					}
				}
				want := map[string][]string{
					"none":  {" resp=2 ", " lib-name= "},
					"hello": {" resp=3 "},
					"auth":  {" resp=3 ", " user=" + labUser + " ", " name=" + labLib + " "},
				}[setup]
				for _, w := range want {
					if !strings.Contains(line+" ", w) {
						t.Errorf("%s with setup %s: CLIENT LIST line %q lacks %q", name, setup, line, strings.TrimSpace(w))
					}
				}
				if setup == "hello" && strings.Contains(line+" ", " lib-name= ") {
					t.Errorf("%s with setup hello sent no CLIENT SETINFO: %q", name, line)
				}
			}
		})
	}
}

// TestIntegrationSetupAuthStorm: a kill storm where every reconnect
// authenticates as the run's ACL user recovers, and Valkey counted no
// failed AUTH.
func TestIntegrationSetupAuthStorm(t *testing.T) {
	sandboxtest.Require(t)
	res := runLab(t, Config{Spawn: &Spawn{}, Setup: "auth", Clients: 30, Strategy: "glide", Scenario: "kill",
		Hold: 300 * time.Millisecond, Settle: 200 * time.Millisecond, Duration: 20 * time.Second})
	checkRecovered(t, res, 30)
	if res.Setup != "auth" {
		t.Errorf("setup %q", res.Setup)
	}
}
