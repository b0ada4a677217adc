//go:build !linux

package daemon

// trimExecutable does nothing outside Linux.
func trimExecutable() int64 { return 0 }
