//go:build linux && (amd64 || arm64)

package listentrace

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/stormguard/stormguard/internal/sandbox/sandboxtest"
)

const helperEnv = "LISTENTRACE_TEST_HOLD"

// TestHelperHold is not a test: TestProgramsFreedOnSIGKILL runs the test
// binary with helperEnv set, and this opens a tracer, says so, and waits
// to be killed.
func TestHelperHold(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("helper process for TestProgramsFreedOnSIGKILL")
	}
	tr, err := Open(context.Background(), "", 1, nil)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	_ = tr
	fmt.Println("ready")
	select {}
}

// bpfIDs reads the BPF program and map IDs a process holds from its fdinfo.
func bpfIDs(pid int) (progs, maps []uint32, err error) {
	dir := fmt.Sprintf("/proc/%d/fdinfo", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				continue
			}
			switch k {
			case "prog_id":
				progs = append(progs, uint32(n))
			case "map_id":
				maps = append(maps, uint32(n))
			}
		}
	}
	return progs, maps, nil
}

// TestProgramsFreedOnSIGKILL kills a process holding the programs with
// SIGKILL and checks the kernel freed every program and map it held:
// nothing is pinned, links are file descriptors.
func TestProgramsFreedOnSIGKILL(t *testing.T) {
	if os.Geteuid() != 0 {
		sandboxtest.SkipOrFail(t, "needs root to load BPF programs")
	}
	if Off() {
		// Not a missing capability: whoever set the variable asked for
		// eBPF off, so there is nothing to load (not a CI skip).
		t.Skipf("%s turns eBPF off", Env)
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestHelperHold$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("helper: %q, %v", line, err)
	}
	progs, maps, err := bpfIDs(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(progs) < 5 || len(maps) < 5 {
		t.Fatalf("helper holds %d programs and %d maps, want the tracer's", len(progs), len(maps))
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	// The kernel frees them after an RCU grace period: wait for that
	// outcome, bounded.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		for _, id := range progs {
			if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(id)); err == nil {
				p.Close()
				left = append(left, fmt.Sprintf("prog %d", id))
			} else if !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("look up program %d: %v", id, err)
			}
		}
		for _, id := range maps {
			if m, err := ebpf.NewMapFromID(ebpf.MapID(id)); err == nil {
				m.Close()
				left = append(left, fmt.Sprintf("map %d", id))
			} else if !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("look up map %d: %v", id, err)
			}
		}
		if len(left) == 0 {
			t.Logf("%d programs and %d maps freed after SIGKILL", len(progs), len(maps))
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still loaded 10 s after SIGKILL: %v", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
