package main

import (
	"flag"
	"io"
	"slices"
	"testing"
	"time"
)

func TestParseInterspersed(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		positional []string
		server     string
		timeout    time.Duration
		verbose    bool
	}{
		{"flags first", []string{"--server", "127.0.0.1:1", "ns", "c", "5"}, []string{"ns", "c", "5"}, "127.0.0.1:1", 0, false},
		{"flags last", []string{"ns", "c", "5", "--server=127.0.0.1:2"}, []string{"ns", "c", "5"}, "127.0.0.1:2", 0, false},
		{"flags between", []string{"ns", "-timeout", "3s", "c", "-v", "5"}, []string{"ns", "c", "5"}, "", 3 * time.Second, true},
		{"negative number", []string{"ns", "c", "-5", "-v"}, []string{"ns", "c", "-5"}, "", 0, true},
		{"minimum int64", []string{"ns", "c", "-9223372036854775808"}, []string{"ns", "c", "-9223372036854775808"}, "", 0, false},
		{"double dash", []string{"-v", "--", "ns", "-server", "c"}, []string{"ns", "-server", "c"}, "", 0, true},
		{"single dash", []string{"-", "c"}, []string{"-", "c"}, "", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("test", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			server := fs.String("server", "", "")
			timeout := fs.Duration("timeout", 0, "")
			verbose := fs.Bool("v", false, "")

			positional, err := parseInterspersed(fs, tt.args)

			if err != nil {
				t.Fatalf("parseInterspersed(%q): %v", tt.args, err)
			}
			if !slices.Equal(positional, tt.positional) {
				t.Errorf("positional = %q, want %q", positional, tt.positional)
			}
			if *server != tt.server {
				t.Errorf("server = %q, want %q", *server, tt.server)
			}
			if *timeout != tt.timeout {
				t.Errorf("timeout = %v, want %v", *timeout, tt.timeout)
			}
			if *verbose != tt.verbose {
				t.Errorf("v = %v, want %v", *verbose, tt.verbose)
			}
		})
	}
}

func TestParseInterspersedErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"unknown flag", []string{"ns", "--nope", "c"}},
		{"missing value", []string{"ns", "c", "--timeout"}},
		{"invalid value", []string{"--timeout", "soon", "ns"}},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.Duration("timeout", 0, "")

		if _, err := parseInterspersed(fs, tt.args); err == nil {
			t.Errorf("%s: parseInterspersed(%q) succeeded, want an error", tt.name, tt.args)
		}
	}
}
