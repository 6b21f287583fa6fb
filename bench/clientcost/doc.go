// Command clientcost measures the storm lab's client side on this machine
// (docs/simulate.md, "The client side's CPU"; bench/simulate_clientcost.sh
// runs it): the CPU a Go client spends per PING round trip on a
// connection it holds (one goroutine per connection, as the lab's clients:
// write the PING, read the answer — the model's AnswerCost is half of it)
// and per raw non-blocking connect() on loopback, accepted or dropped at
// a full accept queue (on loopback the whole handshake runs on the
// connecting CPU). Run it pinned to one CPU with valkey-server pinned to
// another, in a network namespace of its own:
//
//	clientcost ping PORT N       # N connections to valkey-server at 127.0.0.1:PORT, 5 rounds of PINGs
//	clientcost dialfull PORT N   # N connects to a listener of its own that never accepts
//	clientcost dialok PORT N     # N connects to valkey-server (N below its backlog)
//	clientcost labdial PORT N    # the lab's own dial from N goroutines: refused (PORT), dropped (PORT+1, full), accepted (PORT+2)
package main
