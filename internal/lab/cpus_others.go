//go:build !linux

package lab

func allowedCPUs() ([]int, error)      { return nil, errUnsupported }
func pinProcess([]int) (func(), error) { return nil, errUnsupported }
