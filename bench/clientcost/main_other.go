//go:build !linux

package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "clientcost: Linux only (loopback handshakes, network namespaces)")
	os.Exit(2)
}
