package procnet

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/stormguard/stormguard/internal/netns"
)

// Files reads a fixed set of procfs files of one network namespace.
//
// Files under /proc/<tid>/net and the net.* sysctls under /proc/sys are bound
// to a network namespace when they are opened (the seq_file keeps a
// reference to the struct net; sysctl lookups resolve against the opener's
// namespace), not when they are read. So for a target in another namespace
// the files are opened once on a thread inside that namespace (netns.Do,
// via /proc/thread-self, Linux >= 3.17) and then re-read from offset 0 with
// pread(2) on every collect, from any goroutine, without entering the
// namespace again. If the namespace file at the target path is replaced (the
// namespace was deleted and re-created under the same name), the files are
// opened again.
//
// For a target in stormguard's own namespace (and for fixture trees) the
// files are opened by path on each read instead, so a fixture can change
// between reads and nothing stays open.
type Files struct {
	// nsPath is the namespace path ("" = own namespace, open by path).
	nsPath string
	// paths are the files to read: absolute for the own namespace, or
	// relative to /proc/thread-self (e.g. "net/netstat") inside nsPath;
	// an absolute path in namespace mode is opened inside the namespace
	// as is (used for /proc/sys).
	paths []string
	// optional marks files whose absence is not an error (Read returns
	// nil for them).
	optional []bool

	mu    sync.Mutex
	files []*os.File
	nsID  FileID
	bufs  [][]byte
}

// NewFiles prepares reading paths of the network namespace nsPath ("" =
// stormguard's own). In the own namespace paths are absolute and opened on
// each Read; in another namespace a relative path is relative to
// /proc/thread-self ("net/netstat") and an absolute one (/proc/sys/…) is
// taken as is, all opened once inside the namespace. optional[i] marks a
// file whose absence is not an error. Nothing is opened until Read.
func NewFiles(nsPath string, paths []string, optional ...bool) *Files {
	return &Files{nsPath: nsPath, paths: paths, optional: optional}
}

// FileID identifies a namespace file (device and inode), so a namespace
// deleted and re-created under the same path is noticed.
type FileID struct{ dev, ino uint64 }

// Read returns the current contents of every file, in the order of paths;
// an absent optional file is returned as nil. The buffers are reused by
// the next Read.
func (p *Files) Read() ([][]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bufs == nil {
		p.bufs = make([][]byte, len(p.paths))
	}
	out := make([][]byte, len(p.paths))
	if p.nsPath == "" {
		for i, path := range p.paths {
			b, err := readFileInto(path, p.bufs[i])
			if err != nil {
				if p.isOptional(i) && errors.Is(err, os.ErrNotExist) {
					continue
				}
				return nil, err
			}
			p.bufs[i], out[i] = b, b
		}
		return out, nil
	}
	if err := p.ensureOpen(); err != nil {
		return nil, err
	}
	for i, f := range p.files {
		if f == nil {
			continue
		}
		b, err := readAllAt(f, p.bufs[i])
		if err != nil {
			return nil, fmt.Errorf("read %s in network namespace %s: %w", p.paths[i], p.nsPath, err)
		}
		p.bufs[i], out[i] = b, b
	}
	return out, nil
}

func (p *Files) isOptional(i int) bool { return i < len(p.optional) && p.optional[i] }

// ensureOpen opens the files inside the namespace unless they are open and
// the namespace at nsPath is still the one they were opened in.
func (p *Files) ensureOpen() error {
	id, err := StatID(p.nsPath)
	if err != nil {
		p.closeLocked()
		return fmt.Errorf("network namespace %s: %w", p.nsPath, err)
	}
	if p.files != nil && id == p.nsID {
		return nil
	}
	p.closeLocked()
	files := make([]*os.File, len(p.paths))
	err = netns.Do(p.nsPath, func() error {
		for i, path := range p.paths {
			if !filepath.IsAbs(path) {
				path = "/proc/thread-self/" + path
			}
			f, err := os.Open(path)
			if err != nil {
				if p.isOptional(i) && errors.Is(err, os.ErrNotExist) {
					continue
				}
				return err
			}
			files[i] = f
		}
		return nil
	})
	if err != nil {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
		return err
	}
	p.files, p.nsID = files, id
	return nil
}

// Close releases the open files.
func (p *Files) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked()
	return nil
}

func (p *Files) closeLocked() {
	for _, f := range p.files {
		if f != nil {
			f.Close()
		}
	}
	p.files = nil
}

// readFileInto reads the file at path into buf's storage.
func readFileInto(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAllAt(f, buf)
}

// readAllAt reads f from offset 0 to EOF with pread, reusing buf. procfs
// files report size 0, so the buffer grows as needed; seq_file restarts
// from the beginning whenever the offset goes back to 0.
func readAllAt(f *os.File, buf []byte) ([]byte, error) {
	buf = buf[:0]
	if cap(buf) == 0 {
		buf = make([]byte, 0, 8192)
	}
	var off int64
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := f.ReadAt(buf[len(buf):cap(buf)], off)
		buf = buf[:len(buf)+n]
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
		// A short read from a seq_file is not EOF; keep going until
		// ReadAt says so.
		if n == 0 {
			return buf, nil
		}
	}
}
