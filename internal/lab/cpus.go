package lab

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// maxCPU bounds a CPU number in a list (the kernel's CPU sets are smaller).
const maxCPU = 4095

// parseCPUList parses a CPU list as taskset -c and cpuset take it:
// "0", "0-2", "0,2,4-5". It returns the CPUs sorted, without repeats.
func parseCPUList(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty CPU list")
	}
	var out []int
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 || a > maxCPU {
			return nil, fmt.Errorf("CPU list %q: bad CPU %q", s, lo)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b > maxCPU {
				return nil, fmt.Errorf("CPU list %q: bad range %q", s, part)
			}
		}
		for c := a; c <= b; c++ {
			out = append(out, c)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// formatCPUList writes cpus as a comma-separated list.
func formatCPUList(cpus []int) string {
	s := make([]string, len(cpus))
	for i, c := range cpus {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

// splitCPUs returns the server's CPUs from list and the others of the
// machine's online CPUs (the clients'), or an error when either is empty
// or the list names a CPU the machine does not have.
func splitCPUs(list string, online []int) (server, clients []int, err error) {
	server, err = parseCPUList(list)
	if err != nil {
		return nil, nil, err
	}
	for _, c := range server {
		if !slices.Contains(online, c) {
			return nil, nil, fmt.Errorf("CPU %d is not one of this machine's (%s)", c, formatCPUList(online))
		}
	}
	for _, c := range online {
		if !slices.Contains(server, c) {
			clients = append(clients, c)
		}
	}
	if len(clients) == 0 {
		return nil, nil, fmt.Errorf("CPUs %s leave none of this machine's (%s) for the clients", list, formatCPUList(online))
	}
	return server, clients, nil
}
