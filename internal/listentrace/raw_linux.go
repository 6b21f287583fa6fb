//go:build linux && (amd64 || arm64)

package listentrace

import (
	"fmt"
	"slices"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// bpf(2) commands (include/uapi/linux/bpf.h).
const (
	bpfMapLookupElem = 1
	bpfMapUpdateElem = 2
	bpfProgTestRun   = 10
)

// bpfMapElemAttr is bpf_attr for BPF_MAP_*_ELEM.
type bpfMapElemAttr struct {
	mapFD uint32
	_     uint32
	key   uint64
	value uint64
	flags uint64
}

// bpfTestRunAttr is bpf_attr for BPF_PROG_TEST_RUN (the fields up to
// batch_size; the kernel zero-checks nothing beyond the size passed).
type bpfTestRunAttr struct {
	progFD      uint32
	retval      uint32
	dataSizeIn  uint32
	dataSizeOut uint32
	dataIn      uint64
	dataOut     uint64
	repeat      uint32
	duration    uint32
	ctxSizeIn   uint32
	ctxSizeOut  uint32
	ctxIn       uint64
	ctxOut      uint64
	flags       uint32
	cpu         uint32
	batchSize   uint32
	_           uint32
}

// rawMaps reads the maps Read needs with raw bpf(2) system calls on
// buffers of its own: the Go runtime is not told about them (as the
// accept-queue poller's sock_diag calls are not), so a calm sample's reads
// do not wake the runtime's sysmon thread, and a read allocates nothing.
// Every call returns at once: map lookups and updates of arrays, and one
// run of read_drops. The cilium/ebpf library's calls stand in if one fails
// (see Tracer.Read). Its buffers live on the heap (the kernel is handed
// their addresses inside the attribute structs, which the Go compiler does
// not see as pointers), for as long as the Tracer; mu serialises users.
type rawMaps struct {
	mu                      sync.Mutex
	statsFD, dropsFD, maxFD uint32
	progFD                  uint32
	key                     uint32
	stats                   []listentracePortStats
	drops                   listentraceListenerDrops
	waitMax, zero           []uint64
	// maxAccepts is the port's accept count (summed over CPUs) as the
	// stats read before the last wait_max lookup gave it; maxRead says
	// there was one. See read.
	maxAccepts uint64
	maxRead    bool
	ctx        [8]byte
	attr       bpfMapElemAttr
	run        bpfTestRunAttr
}

func newRawMaps(t *Tracer, ncpu int) *rawMaps {
	return &rawMaps{
		statsFD: uint32(t.objs.Stats.FD()), dropsFD: uint32(t.objs.Drops.FD()), maxFD: uint32(t.objs.WaitMax.FD()),
		progFD: uint32(t.objs.ReadDrops.FD()),
		stats:  make([]listentracePortStats, ncpu), waitMax: make([]uint64, ncpu), zero: make([]uint64, ncpu),
	}
}

// rawBPF makes one raw bpf(2) call with attr.
func rawBPF(cmd uintptr, attr unsafe.Pointer, size uintptr) error {
	for {
		_, _, e := unix.RawSyscall(unix.SYS_BPF, cmd, uintptr(attr), size)
		switch e {
		case 0:
			return nil
		case unix.EINTR, unix.EAGAIN:
			continue
		}
		return e
	}
}

// mapCall looks up (or with update, writes) key 0 of the map fd.
func (r *rawMaps) mapCall(cmd uintptr, fd uint32, value unsafe.Pointer) error {
	r.key = 0
	r.attr = bpfMapElemAttr{mapFD: fd, key: uint64(uintptr(unsafe.Pointer(&r.key))), value: uint64(uintptr(value))}
	return rawBPF(cmd, unsafe.Pointer(&r.attr), unsafe.Sizeof(r.attr))
}

// read fills stats, drops (after running read_drops) and waitMax, then
// resets wait_max unless it is zero; what the Tracer's Read does with the
// library's calls, except that wait_max is not looked up while no accept
// was counted since its last lookup (waitMax is then zero).
func (r *rawMaps) read() error {
	if err := r.mapCall(bpfMapLookupElem, r.statsFD, unsafe.Pointer(&r.stats[0])); err != nil {
		return fmt.Errorf("read port stats: %w", err)
	}
	r.run = bpfTestRunAttr{progFD: r.progFD, ctxSizeIn: uint32(len(r.ctx)), ctxIn: uint64(uintptr(unsafe.Pointer(&r.ctx[0])))}
	if err := rawBPF(bpfProgTestRun, unsafe.Pointer(&r.run), unsafe.Sizeof(r.run)); err != nil {
		return fmt.Errorf("run read_drops: %w", err)
	}
	if err := r.mapCall(bpfMapLookupElem, r.dropsFD, unsafe.Pointer(&r.drops)); err != nil {
		return fmt.Errorf("read listener drops: %w", err)
	}
	// wait_max only moves in the accept exit, after that accept's
	// increment of stats' accepts: while the count is what it was when
	// wait_max was last read (and reset), no wait can be in it that
	// this read has not seen, and one whose increment comes later is
	// read with the sample that sees the increment. A calm sample of a
	// server that accepts nothing (most samples of an idle agent at a
	// 10 ms interval) so skips the lookup: 3 bpf calls instead of 4.
	var accepts uint64
	for i := range r.stats {
		accepts += r.stats[i].Accepts
	}
	if r.maxRead && accepts == r.maxAccepts {
		clear(r.waitMax)
		return nil
	}
	if err := r.mapCall(bpfMapLookupElem, r.maxFD, unsafe.Pointer(&r.waitMax[0])); err != nil {
		return fmt.Errorf("read longest wait: %w", err)
	}
	r.maxAccepts, r.maxRead = accepts, true
	// No wait since the last reset (no accept: every calm sample of an
	// idle server): nothing to reset, one system call fewer.
	if slices.ContainsFunc(r.waitMax, func(v uint64) bool { return v != 0 }) {
		if err := r.mapCall(bpfMapUpdateElem, r.maxFD, unsafe.Pointer(&r.zero[0])); err != nil {
			return fmt.Errorf("reset longest wait: %w", err)
		}
	}
	return nil
}
