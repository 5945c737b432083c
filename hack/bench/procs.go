package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Default timeouts of a supervisor: how long a process gets to exit after its stop signal,
// and then after its dump signal, before it is killed.
const (
	stopTimeout = 15 * time.Second
	dumpTimeout = 5 * time.Second
)

// process is a child process that the harness started and must stop.
type process struct {
	name string
	cmd  *exec.Cmd
	// stopSignal is the signal for a clean shutdown: SIGTERM, or SIGINT for PostgreSQL's fast
	// shutdown.
	stopSignal syscall.Signal
	// dumpSignal, when not zero, makes the process write what it is doing to its log and
	// exit: SIGQUIT for a Go program, which prints every goroutine's stack. It is sent when
	// the process does not exit within stopTimeout of its stop signal.
	dumpSignal syscall.Signal
	logPath    string
	done       chan struct{}
	err        error
}

// supervisor tracks every process the harness started, so that all of them are stopped by
// PID on success, on failure and on SIGINT or SIGTERM.
type supervisor struct {
	mu    sync.Mutex
	procs []*process
	// keepDir, when set, receives a copy of the log of every process that did not exit in
	// time, since the logs live in a temporary directory that the harness removes.
	keepDir string
	// stopTimeout and dumpTimeout replace the defaults of the same names when not zero.
	stopTimeout, dumpTimeout time.Duration
}

// keepLogsIn makes s copy the logs of processes that overran their stop into dir.
func (s *supervisor) keepLogsIn(dir string) {
	s.mu.Lock()
	s.keepDir = dir
	s.mu.Unlock()
}

// start runs cmd in its own process group, so that a Ctrl-C in the terminal reaches only the
// harness, which then stops the children in order. The output goes to logPath. dumpSignal is
// as described on process.
func (s *supervisor) start(name string, cmd *exec.Cmd, logPath string, stopSignal, dumpSignal syscall.Signal) (*process, error) {
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
	p := &process{name: name, cmd: cmd, stopSignal: stopSignal, dumpSignal: dumpSignal, logPath: logPath, done: make(chan struct{})}
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

// stopResult is the outcome of a stop.
type stopResult struct {
	// Took is the time from the stop signal to the exit.
	Took time.Duration
	// Overran is set when the process did not exit within the stop timeout.
	Overran bool
	// KeptLog is the copy of the log of a process that overran, when the supervisor keeps
	// them.
	KeptLog string `json:",omitempty"`
}

// stop signals p by its PID and waits up to stopTimeout. A process that overran gets its dump
// signal, if it has one, and is then killed; its log is kept when s has a keepDir. Stopping a
// process that has exited returns the zero stopResult.
func (s *supervisor) stop(p *process) (res stopResult) {
	select {
	case <-p.done:
		return res
	default:
	}
	pid := p.cmd.Process.Pid
	start := time.Now()
	defer func() { res.Took = time.Since(start) }()
	slog.Info("stopping", "process", p.name, "pid", pid, "signal", p.stopSignal)
	if err := syscall.Kill(pid, p.stopSignal); err != nil {
		slog.Warn("signal failed", "process", p.name, "pid", pid, "err", err)
	}
	timeout, dumpWait := cmp.Or(s.stopTimeout, stopTimeout), cmp.Or(s.dumpTimeout, dumpTimeout)
	select {
	case <-p.done:
		return res
	case <-time.After(timeout):
	}
	res.Overran = true
	defer func() { res.KeptLog = s.keepLog(p) }()
	if p.dumpSignal != 0 {
		slog.Warn("process did not exit in time, asking it to dump its stacks", "process", p.name, "pid", pid, "timeout", timeout, "signal", p.dumpSignal)
		if err := syscall.Kill(pid, p.dumpSignal); err != nil {
			slog.Warn("signal failed", "process", p.name, "pid", pid, "err", err)
		}
		select {
		case <-p.done:
			return res
		case <-time.After(dumpWait):
		}
	}
	slog.Warn("process did not exit in time, killing it", "process", p.name, "pid", pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		slog.Warn("kill failed", "process", p.name, "pid", pid, "err", err)
	}
	<-p.done
	return res
}

// keepLog copies the log of p, which has exited, into s.keepDir and returns the copy's path,
// or "" when s keeps no logs or the copy failed.
func (s *supervisor) keepLog(p *process) string {
	s.mu.Lock()
	dir := s.keepDir
	s.mu.Unlock()
	if dir == "" {
		return ""
	}
	dst := filepath.Join(dir, fmt.Sprintf("%s-%d-late-stop.log", logName(p.name), p.cmd.Process.Pid))
	if err := copyFile(dst, p.logPath); err != nil {
		slog.Warn("keeping the log failed", "process", p.name, "log", p.logPath, "err", err)
		return ""
	}
	slog.Warn("kept the log of the process that did not exit in time", "process", p.name, "log", dst)
	return dst
}

// logName turns a process name such as "redis-server (always)" into a file name part.
func logName(name string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return -1
	}, strings.ReplaceAll(name, " ", "-"))
}

func copyFile(dst, src string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
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
