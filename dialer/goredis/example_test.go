package goredis_test

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/stormguard/stormguard/dialer"
	"github.com/stormguard/stormguard/dialer/goredis"
)

// One Dialer per process, shared by every client. Needs a server, so it
// is only compiled.
func ExampleDialer() {
	d, err := dialer.New(dialer.Options{}) // documented defaults
	if err != nil {
		panic(err)
	}
	rdb := redis.NewClient(&redis.Options{
		Addr:   "127.0.0.1:6379",
		Dialer: goredis.Dialer(d),
	})
	defer rdb.Close()
	fmt.Println(rdb.Ping(context.Background()).Result())
}
