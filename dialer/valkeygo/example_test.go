package valkeygo_test

import (
	"context"
	"fmt"
	"time"

	"github.com/valkey-io/valkey-go"

	"github.com/stormguard/stormguard/backoff"
	"github.com/stormguard/stormguard/dialer"
	"github.com/stormguard/stormguard/dialer/valkeygo"
)

// One Dialer per process, shared by every client, so the per-target rate
// limit, backoff and breaker see the whole process. Needs a server, so it
// is only compiled.
func ExampleDialCtxFn() {
	d, err := dialer.New(dialer.Options{
		Rate:    10, // new connections per second per Valkey node
		Backoff: backoff.FullJitter{Base: 200 * time.Millisecond, Cap: 30 * time.Second},
	})
	if err != nil {
		panic(err)
	}
	client, err := valkey.NewClient(valkey.ClientOption{
		InitAddress: []string{"127.0.0.1:6379"},
		DialCtxFn:   valkeygo.DialCtxFn(d),
	})
	if err != nil {
		fmt.Println("connect:", err)
		return
	}
	defer client.Close()
	fmt.Println(client.Do(context.Background(), client.B().Ping().Build()).ToString())
}
