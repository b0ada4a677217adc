// Package testport hands tests loopback ports that nothing else takes
// between the moment they are chosen and the moment a server binds them.
//
// A port found by listening on 127.0.0.1:0 and closing again comes from the
// kernel's ephemeral range — the range outgoing connections draw their
// source ports from. A test that starts servers one after another can see
// an earlier server's outgoing connection take the port a later server was
// given ("bind: address already in use"). Ports handed out here lie below
// the ephemeral range, are checked free for TCP and UDP, and are never
// handed out twice in one process.
package testport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the first port handed out: above the well-known services.
const lowest = 10000

var (
	mu    sync.Mutex
	given = map[int]bool{}
)

// ephemeralStart is the first port of the kernel's ephemeral range
// (32768 when it cannot be read).
func ephemeralStart() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= lowest+1000 {
		return 32768
	}
	return n
}

// free reports whether port is free on 127.0.0.1 for TCP and UDP.
func free(port int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return false
	}
	defer l.Close()
	u, err := net.ListenPacket("udp", addr)
	if err != nil {
		return false
	}
	u.Close()
	return true
}

// Range returns the first of n consecutive free ports.
func Range(n int) (int, error) {
	if n < 1 {
		return 0, fmt.Errorf("testport: %d ports", n)
	}
	end := ephemeralStart()
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		first := lowest + rand.IntN(end-lowest-n)
		ok := true
		for p := first; p < first+n && ok; p++ {
			ok = !given[p] && free(p)
		}
		if ok {
			for p := first; p < first+n; p++ {
				given[p] = true
			}
			return first, nil
		}
	}
	return 0, errors.New("testport: no free ports below the ephemeral range")
}

// Port returns one free port.
func Port() (int, error) { return Range(1) }

// Addr returns 127.0.0.1:port for a free port.
func Addr() (string, error) {
	p, err := Port()
	if err != nil {
		return "", err
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), nil
}
