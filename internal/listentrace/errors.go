package listentrace

import (
	"errors"
	"os"
)

// ErrNoBTF means the kernel exposes no BTF, which the programs' CO-RE
// relocations need.
var ErrNoBTF = errors.New("kernel has no BTF (/sys/kernel/btf/vmlinux missing; needs CONFIG_DEBUG_INFO_BTF)")

// ErrPermission means the process may not load BPF programs.
var ErrPermission = errors.New("not permitted to load BPF programs (needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN)")

// ErrUnsupported is returned off Linux and on CPUs the programs are not built for.
var ErrUnsupported = errors.New("eBPF is only built for Linux on amd64 and arm64")

// ErrNoListener is returned by Counts while no listening socket of the
// port is known: its SYN queue (the half-open connections) is unknown.
var ErrNoListener = errors.New("no listening socket of the port known to the programs")

// ErrClosed is returned by a Tracer's reads after Close.
var ErrClosed = errors.New("eBPF tracer closed")

// Env turns eBPF off when set to 0, false, off or no (`make test` runs
// both ways with it; --ebpf=false does the same per command).
const Env = "STORMGUARD_EBPF"

// Off reports whether the environment turns eBPF off.
func Off() bool {
	switch os.Getenv(Env) {
	case "0", "false", "off", "no":
		return true
	}
	return false
}
