package dialer_test

import (
	"fmt"
	"time"

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

// What the server tells: two INFO readings (`INFO clients cpu stats`) some
// seconds apart while it is healthy. Here its main thread was 4% busy
// between them, so the next loss starts the fleet at ServerShare × (1 −
// 0.04) / ConnectCost = 0.25 × 0.96 / 20µs = 12,000 connections/s instead of
// AcceptRate: 12,000 connections come back over a 1 s window.
func ExampleDialer_ObserveInfo() {
	now := time.Date(2026, 12, 3, 4, 0, 0, 0, time.UTC)
	d, err := dialer.New(dialer.Options{ConnectCost: 20 * time.Microsecond, ServerShare: 0.25, Now: func() time.Time { return now }})
	if err != nil {
		fmt.Println(err)
		return
	}
	const addr = "10.0.0.5:6379"
	for _, cpu := range []string{"100.000000", "100.400000"} { // 0.4 s of CPU in 10 s
		info := "# Clients\r\nconnected_clients:12000\r\n# CPU\r\nused_cpu_sys_main_thread:" + cpu +
			"\r\nused_cpu_user_main_thread:0.000000\r\n# Stats\r\ntotal_connections_received:12000\r\n"
		if err := d.ObserveInfo(addr, info); err != nil {
			fmt.Println(err)
			return
		}
		now = now.Add(10 * time.Second)
	}
	st := d.Stats(addr)
	fmt.Printf("busy %.2f, start %.0f/s, window %s\n", st.ServerBusy, st.StartRate, st.Window)
	// Output: busy 0.04, start 12000/s, window 1s
}
