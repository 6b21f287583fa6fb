//go:build !linux

package stormtest
