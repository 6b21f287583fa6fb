//go:build !linux

package lab

import "context"

func readNetstat(string) (map[string]map[string]uint64, error) { return nil, errUnsupported }

func blackhole(context.Context, string, int) (func() error, error) { return nil, errUnsupported }

func linkLoss(string, float64) error { return errUnsupported }
