package main

import "testing"

// -dev listens on loopback only: the check takes host:port (or a bare host)
// and accepts localhost, 127.0.0.0/8 and ::1, nothing else.
func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:7420":          true,
		"127.1.2.3:0":             true,
		"localhost:7420":          true,
		"[::1]:7420":              true,
		"[::ffff:127.0.0.1]:7420": true,
		"0.0.0.0:7420":            false,
		":7420":                   false,
		"[::]:7420":               false,
		"10.0.0.1:7420":           false,
		"127.example.com:7420":    false,
		"localhost.example:7420":  false,
		"127.0.0.1":               true,
		"::1":                     true,
		"10.0.0.1":                false,
	} {
		if got := isLoopback(addr); got != want {
			t.Errorf("isLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
