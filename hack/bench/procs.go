package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// stopTimeout is how long a process gets to exit after its stop signal before it is killed.
const stopTimeout = 15 * time.Second

// process is a child process that the harness started and must stop.
type process struct {
	name string
	cmd  *exec.Cmd
	// stopSignal is the signal for a clean shutdown: SIGTERM, or SIGINT for PostgreSQL's fast
	// shutdown.
	stopSignal syscall.Signal
	done       chan struct{}
	err        error
}

// supervisor tracks every process the harness started, so that all of them are stopped by
// PID on success, on failure and on SIGINT or SIGTERM.
type supervisor struct {
	mu    sync.Mutex
	procs []*process
}

// start runs cmd in its own process group, so that a Ctrl-C in the terminal reaches only the
// harness, which then stops the children in order. The output goes to logPath.
func (s *supervisor) start(name string, cmd *exec.Cmd, logPath string, stopSignal syscall.Signal) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log of %s: %w", name, err)
	}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, cmd.Path, err)
	}
	p := &process{name: name, cmd: cmd, stopSignal: stopSignal, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logFile.Close()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	slog.Info("started", "process", name, "pid", cmd.Process.Pid, "log", logPath)
	return p, nil
}

// stop signals p by its PID, waits up to stopTimeout and then kills it.
func (s *supervisor) stop(p *process) {
	select {
	case <-p.done:
		return
	default:
	}
	pid := p.cmd.Process.Pid
	slog.Info("stopping", "process", p.name, "pid", pid, "signal", p.stopSignal)
	if err := syscall.Kill(pid, p.stopSignal); err != nil {
		slog.Warn("signal failed", "process", p.name, "pid", pid, "err", err)
	}
	select {
	case <-p.done:
		return
	case <-time.After(stopTimeout):
	}
	slog.Warn("process did not exit in time, killing it", "process", p.name, "pid", pid, "timeout", stopTimeout)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		slog.Warn("kill failed", "process", p.name, "pid", pid, "err", err)
	}
	<-p.done
}

// stopAll stops every process still running, the last started first.
func (s *supervisor) stopAll() {
	s.mu.Lock()
	procs := append([]*process(nil), s.procs...)
	s.procs = nil
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		s.stop(procs[i])
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitTCP waits until addr accepts a connection, p exits, or timeout passes.
func waitTCP(ctx context.Context, p *process, addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before listening on %s: %v (see its log)", p.name, addr, p.err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not listen on %s within %v (see its log)", p.name, addr, timeout)
		}
	}
}
