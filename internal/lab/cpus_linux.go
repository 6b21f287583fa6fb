//go:build linux

package lab

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// allowedCPUs is the CPUs this process may run on.
func allowedCPUs() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("read CPU affinity: %w", err)
	}
	var out []int
	for c := 0; c <= maxCPU; c++ {
		if set.IsSet(c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// pinProcess sets the CPU affinity of every thread of this process to cpus
// (threads made later inherit it from the thread that makes them) and
// returns a function that gives every thread the previous affinity back.
func pinProcess(cpus []int) (func(), error) {
	var prev, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &prev); err != nil {
		return nil, fmt.Errorf("read CPU affinity: %w", err)
	}
	for _, c := range cpus {
		set.Set(c)
	}
	apply := func(s *unix.CPUSet) error {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return fmt.Errorf("list threads: %w", err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			// A thread may exit meanwhile (ESRCH): nothing to pin.
			if err := unix.SchedSetaffinity(tid, s); err != nil && err != unix.ESRCH {
				return fmt.Errorf("set CPU affinity of thread %d: %w", tid, err)
			}
		}
		return nil
	}
	if err := apply(&set); err != nil {
		_ = apply(&prev)
		return nil, err
	}
	return func() { _ = apply(&prev) }, nil
}
