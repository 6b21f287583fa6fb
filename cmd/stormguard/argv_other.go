//go:build !linux

package main

// hideArgvPasswords does nothing outside Linux: whether the runtime's
// argument strings alias the process's argv block is not known there.
func hideArgvPasswords() {}
