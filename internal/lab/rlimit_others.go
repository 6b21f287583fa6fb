//go:build !linux

package lab

// RaiseFDLimit does nothing off Linux; the run fails later if it runs out.
func RaiseFDLimit(int) error { return nil }
