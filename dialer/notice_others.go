//go:build !linux

package dialer

import (
	"net"
	"time"
)

// closedAgo is 0 where TCP_INFO's tcpi_last_ack_recv is not read: the
// loss is taken as noticed when it happened.
func closedAgo(net.Conn) time.Duration { return 0 }
