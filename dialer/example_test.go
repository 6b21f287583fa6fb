package dialer_test

import (
	"fmt"

	"github.com/stormguard/stormguard/dialer"
)

// A fleet of unknown size: tell the dialer what the server reports while it
// is healthy (INFO clients: connected_clients), and the next loss by a close
// or reset spreads the fleet's redials over connected_clients / AcceptRate
// (5,000/s to begin with, then learned from the target's own reconnects).
func ExampleDialer_ObserveClients() {
	d, err := dialer.New(dialer.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	const addr = "10.0.0.5:6379"
	d.ObserveClients(addr, 12000) // from INFO clients, refreshed now and then
	fmt.Println(d.Stats(addr).Window)
	// Output: 2.4s
}

// A fleet-size hint when the count is known in advance: 400 pods × 10
// connections against a server assumed to admit 5,000 new connections/s.
func ExampleOptions_fleetSize() {
	d, err := dialer.New(dialer.Options{FleetSize: 4000, AcceptRate: 5000})
	if err != nil {
		fmt.Println(err)
		return
	}
	d.ObserveClients("10.0.0.5:6379", 0) // no observation: the hint applies
	fmt.Println(d.Stats("10.0.0.5:6379").Window)
	// Output: 800ms
}
