package lab

import "fmt"

// tcpExt reads the TcpExt counters of the network namespace at nsPath
// (the current one when empty).
func tcpExt(nsPath string) (map[string]uint64, error) {
	all, err := readNetstat(nsPath)
	if err != nil {
		return nil, err
	}
	m, ok := all["TcpExt"]
	if !ok {
		return nil, fmt.Errorf("no TcpExt counters in netstat")
	}
	return m, nil
}
