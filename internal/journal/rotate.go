package journal

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// RotatingFile appends lines to a file and rotates it when it grows past
// MaxBytes, keeping Keep old files (path.1 … path.Keep).
type RotatingFile struct {
	Path     string
	MaxBytes int64
	Keep     int

	mu   sync.Mutex
	f    *os.File
	size int64
}

// WriteLine appends b and a newline. Errors are returned, never panics;
// the next call retries opening the file.
func (r *RotatingFile) WriteLine(b []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		if err := r.open(); err != nil {
			return err
		}
	}
	if r.MaxBytes > 0 && r.size+int64(len(b))+1 > r.MaxBytes && r.size > 0 {
		if err := r.rotate(); err != nil {
			return err
		}
	}
	line := append(append(make([]byte, 0, len(b)+1), b...), '\n')
	n, err := r.f.Write(line)
	if err != nil {
		// A short write (disk full) leaves a torn line that would make
		// the whole file unreadable as JSON lines once later writes
		// append after it: cut it off again, best effort.
		if n > 0 {
			_ = r.f.Truncate(r.size)
		}
		// Drop the handle so a later write reopens (disk freed, file
		// removed by an operator).
		r.f.Close()
		r.f = nil
		return fmt.Errorf("write %s: %w", r.Path, err)
	}
	r.size += int64(n)
	return nil
}

func (r *RotatingFile) open() error {
	if err := os.MkdirAll(filepath.Dir(r.Path), 0o755); err != nil {
		return fmt.Errorf("create directory for %s: %w", r.Path, err)
	}
	f, err := os.OpenFile(r.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open %s: %w", r.Path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat %s: %w", r.Path, err)
	}
	r.f, r.size = f, st.Size()
	return nil
}

func (r *RotatingFile) rotate() error {
	r.f.Close()
	r.f = nil
	keep := r.Keep
	if keep < 1 {
		keep = 1
	}
	for i := keep - 1; i >= 1; i-- {
		_ = os.Rename(fmt.Sprintf("%s.%d", r.Path, i), fmt.Sprintf("%s.%d", r.Path, i+1))
	}
	if err := os.Rename(r.Path, r.Path+".1"); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("rotate %s: %w", r.Path, err)
	}
	return r.open()
}

// Close closes the current file.
func (r *RotatingFile) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
