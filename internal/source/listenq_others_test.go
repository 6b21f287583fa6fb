//go:build !linux

package source

import (
	"context"
	"errors"
	"testing"
)

func TestOpenListenqUnsupported(t *testing.T) {
	_, err := openListenq(context.Background(), Options{})
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("openListenq = %v, want errors.ErrUnsupported", err)
	}
}
