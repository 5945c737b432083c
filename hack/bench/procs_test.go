package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startStubborn starts a shell that ignores SIGTERM and exits on SIGQUIT after writing a line,
// as a Go program writes its stacks.
func startStubborn(t *testing.T, sup *supervisor, name string, dump syscall.Signal) *process {
	t.Helper()
	script := `trap '' TERM; trap 'echo stacks dumped; exit 2' QUIT; echo ready; while :; do sleep 0.05; done`
	logPath := filepath.Join(t.TempDir(), "stubborn.log")
	p, err := sup.start(name, exec.Command("sh", "-c", script), logPath, syscall.SIGTERM, dump)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL) })
	// Wait until the traps are set: a signal sent before then would end the shell at once.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if data, _ := os.ReadFile(logPath); strings.Contains(string(data), "ready") {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatal("the shell did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStopKeepsLogOnOverrun(t *testing.T) {
	for _, tc := range []struct {
		name     string
		dump     syscall.Signal
		wantDump bool
	}{
		{name: "go program (x)", dump: syscall.SIGQUIT, wantDump: true},
		{name: "server", dump: 0, wantDump: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep := t.TempDir()
			sup := &supervisor{stopTimeout: 200 * time.Millisecond, dumpTimeout: 5 * time.Second}
			sup.keepLogsIn(keep)
			p := startStubborn(t, sup, tc.name, tc.dump)
			sup.stop(p)
			select {
			case <-p.done:
			default:
				t.Fatal("stop returned before the process exited")
			}
			logs, err := filepath.Glob(filepath.Join(keep, "*-late-stop.log"))
			if err != nil || len(logs) != 1 {
				t.Fatalf("kept logs = %v (%v), want one", logs, err)
			}
			if name := filepath.Base(logs[0]); strings.ContainsAny(name, " ()") {
				t.Errorf("kept log %q has spaces or brackets in its name", name)
			}
			data, err := os.ReadFile(logs[0])
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(data), "stacks dumped"); got != tc.wantDump {
				t.Errorf("kept log %q contains the dump: %v, want %v", data, got, tc.wantDump)
			}
		})
	}
}

func TestStopKeepsNoLogInTime(t *testing.T) {
	keep := t.TempDir()
	sup := &supervisor{}
	sup.keepLogsIn(keep)
	p, err := sup.start("sleeper", exec.Command("sleep", "60"), filepath.Join(t.TempDir(), "sleeper.log"), syscall.SIGTERM, syscall.SIGQUIT)
	if err != nil {
		t.Fatal(err)
	}
	sup.stop(p)
	if entries, err := os.ReadDir(keep); err != nil || len(entries) != 0 {
		t.Fatalf("kept files = %v (%v), want none", entries, err)
	}
}
