package memcached

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// envSkipMemcached, set to 1, skips the tests that need a memcached binary instead of failing
// them.
const envSkipMemcached = "COUNTERD_SKIP_MEMCACHED"

// memcachedServer is a memcached process on a loopback port, owned by one test.
type memcachedServer struct {
	t      *testing.T
	binary string
	port   int
	cmd    *exec.Cmd
	stderr bytes.Buffer
	// exited receives the result of cmd.Wait; it is nil while no process runs.
	exited chan error
}

// startMemcached starts memcached on a free loopback port and stops it when the test ends.
// Without a memcached binary the test fails, unless COUNTERD_SKIP_MEMCACHED=1.
func startMemcached(t *testing.T) *memcachedServer {
	t.Helper()
	binary, err := exec.LookPath("memcached")
	if err != nil {
		if os.Getenv(envSkipMemcached) == "1" {
			t.Skipf("skipping: memcached is not installed and %s=1", envSkipMemcached)
		}
		t.Fatalf("memcached is not installed (%v): install it, for example with apt-get install memcached, or set %s=1 to skip these tests", err, envSkipMemcached)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()

	m := &memcachedServer{t: t, binary: binary, port: port}
	m.start()
	t.Cleanup(m.stop)
	return m
}

func (m *memcachedServer) addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(m.port))
}

// start runs memcached on m's port and waits until it accepts connections.
func (m *memcachedServer) start() {
	m.t.Helper()
	args := []string{"-l", "127.0.0.1", "-p", strconv.Itoa(m.port), "-U", "0", "-m", "64"}
	if os.Geteuid() == 0 {
		// memcached refuses to run as root without a user to switch to.
		args = append(args, "-u", "nobody")
	}
	m.stderr.Reset()
	m.cmd = exec.Command(m.binary, args...)
	m.cmd.Stderr = &m.stderr
	if err := m.cmd.Start(); err != nil {
		m.t.Fatalf("start memcached: %v", err)
	}
	m.exited = make(chan error, 1)
	go func(cmd *exec.Cmd, exited chan<- error) { exited <- cmd.Wait() }(m.cmd, m.exited)

	// The deadline only bounds a broken start; the test checks no duration.
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("tcp", m.addr())
		if err == nil {
			conn.Close()
			return
		}
		select {
		case err := <-m.exited:
			m.exited = nil
			m.t.Fatalf("memcached on port %d exited before accepting connections: %v\n%s", m.port, err, m.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("memcached on port %d did not accept connections within 10s: %v", m.port, err)
		}
	}
}

// stop kills the memcached process by its PID and waits for it to exit. Stopping a stopped
// server does nothing.
func (m *memcachedServer) stop() {
	if m.exited == nil {
		return
	}
	if err := m.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		m.t.Errorf("kill memcached (pid %d): %v", m.cmd.Process.Pid, err)
	}
	<-m.exited
	m.exited = nil
}
