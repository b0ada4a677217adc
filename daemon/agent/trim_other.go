//go:build !linux

package agent

// trimExecutable does nothing outside Linux.
func trimExecutable() int64 { return 0 }
