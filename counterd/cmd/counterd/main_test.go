package main

import (
	"io"
	"os"
	"strings"
	"testing"
)

// captureOutput runs f with os.Stdout and os.Stderr sent to pipes and returns what it wrote to
// each.
func captureOutput(t *testing.T, f func()) (string, string) {
	t.Helper()
	read := func(dst *string) (*os.File, chan struct{}) {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatalf("os.Pipe: %v", err)
		}
		done := make(chan struct{})
		go func() {
			b, _ := io.ReadAll(r)
			*dst = string(b)
			close(done)
		}()
		return w, done
	}
	var stdout, stderr string
	outW, outDone := read(&stdout)
	errW, errDone := read(&stderr)
	oldOut, oldErr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = outW, errW
	defer func() { os.Stdout, os.Stderr = oldOut, oldErr }()
	f()
	outW.Close()
	errW.Close()
	<-outDone
	<-errDone
	return stdout, stderr
}

func TestHelpNamesVerbsOrServeFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-h"}, "counterd bench [flags]"},
		{[]string{"--help"}, "counterd bench [flags]"},
		{[]string{"help"}, "counterd bench [flags]"},
		{[]string{"serve", "-h"}, "-data-dir"},
		{[]string{"serve", "--help"}, "-data-dir"},
		{[]string{"bench", "-h"}, "-concurrency"},
	} {
		var code int
		stdout, stderr := captureOutput(t, func() { code = run(tc.args) })
		if code != 0 {
			t.Errorf("counterd %q exited with %d, want 0; stderr: %s", tc.args, code, stderr)
		}
		if got := stdout + stderr; !strings.Contains(got, tc.want) {
			t.Errorf("counterd %q printed %q, want it to contain %q", tc.args, got, tc.want)
		}
	}
}

func TestServeRejectsInvalidFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--gc-heap-floor-mib", "-1"}, "gcHeapFloorMiB: -1 is out of range"},
		{[]string{"--malloc-trim-interval", "-1s"}, "invalid --malloc-trim-interval -1s"},
	} {
		var code int
		serve := func() {
			code = run(append([]string{"serve"}, tc.args...))
		}
		_, stderr := captureOutput(t, serve)
		if code != 2 {
			t.Errorf("counterd serve %v exited with %d, want 2; stderr: %s", tc.args, code, stderr)
		}
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("counterd serve %v: stderr %q does not contain %q", tc.args, stderr, tc.want)
		}
	}
}
