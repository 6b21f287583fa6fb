package discover

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
)

// Listener is one listening TCP socket from /proc/net/tcp or tcp6.
type Listener struct {
	IP    net.IP
	Port  int
	Inode uint64
}

// tcpListen is the LISTEN state in /proc/net/tcp's st column.
const tcpListen = "0A"

// ParseProcNetTCP parses /proc/net/tcp or /proc/net/tcp6 and returns the
// sockets in LISTEN state.
func ParseProcNetTCP(r io.Reader) ([]Listener, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var out []Listener
	first := true
	for sc.Scan() {
		line := sc.Text()
		if first {
			first = false
			if strings.Contains(line, "local_address") {
				continue
			}
		}
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		if f[3] != tcpListen {
			continue
		}
		ip, port, err := parseHexAddr(f[1])
		if err != nil {
			return out, fmt.Errorf("parse /proc/net/tcp local address %q: %w", f[1], err)
		}
		inode, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return out, fmt.Errorf("parse /proc/net/tcp inode %q: %w", f[9], err)
		}
		out = append(out, Listener{IP: ip, Port: port, Inode: inode})
	}
	return out, sc.Err()
}

// parseHexAddr decodes "0100007F:18EB" (IPv4, host byte order per 32-bit
// word) or the 32-hex-digit IPv6 form.
func parseHexAddr(s string) (net.IP, int, error) {
	host, ps, ok := strings.Cut(s, ":")
	if !ok {
		return nil, 0, fmt.Errorf("no port")
	}
	p, err := strconv.ParseUint(ps, 16, 16)
	if err != nil {
		return nil, 0, fmt.Errorf("port: %w", err)
	}
	b, err := hex.DecodeString(host)
	if err != nil || (len(b) != 4 && len(b) != 16) {
		return nil, 0, fmt.Errorf("address %q", host)
	}
	// The kernel prints each 32-bit word in host (little-endian) order.
	ip := make(net.IP, len(b))
	for w := 0; w < len(b); w += 4 {
		ip[w], ip[w+1], ip[w+2], ip[w+3] = b[w+3], b[w+2], b[w+1], b[w]
	}
	if len(ip) == 16 {
		if v4 := ip.To4(); v4 != nil && !ip.Equal(net.IPv6zero) && !ip.Equal(net.IPv6loopback) {
			ip = v4
		}
	}
	return ip, int(p), nil
}
