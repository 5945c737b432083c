package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"

	"github.com/counterd/counterd/counterd/client"
)

// defaultServer is the address the client verbs and bench use without --server.
const defaultServer = "localhost:8080"

func runAdd(args []string) int {
	return runClientVerb(os.Stdout, os.Stderr, "add", args)
}

func runGet(args []string) int {
	return runClientVerb(os.Stdout, os.Stderr, "get", args)
}

func runClear(args []string) int {
	return runClientVerb(os.Stdout, os.Stderr, "clear", args)
}

// clientVerb describes one of the verbs that call a running server.
type clientVerb struct {
	positional []string
	summary    string
	mutation   bool
}

var clientVerbs = map[string]clientVerb{
	"add":   {positional: []string{"NAMESPACE", "COUNTER", "DELTA"}, summary: "Add DELTA (an integer, may be negative) to a counter.", mutation: true},
	"get":   {positional: []string{"NAMESPACE", "COUNTER"}, summary: "Print a counter's value."},
	"clear": {positional: []string{"NAMESPACE", "COUNTER"}, summary: "Reset a counter: afterwards it counts only adds generated after the clear.", mutation: true},
}

// clientRequest is one parsed command line of a client verb.
type clientRequest struct {
	server, namespace, counter string
	delta                      int64
	timeout                    time.Duration
	token                      string
	generationTime             time.Time
}

// runClientVerb runs add, get or clear and returns the exit code: 0 on success, 1 when the
// request failed and 2 for a usage error.
func runClientVerb(stdout, stderr io.Writer, verb string, args []string) int {
	req, code := parseClientVerb(stderr, verb, args)
	if req == nil {
		return code
	}

	c, err := client.New(req.server, client.WithMaxAttempts(0))
	if err != nil {
		fmt.Fprintf(stderr, "counterd %s: %v\n", verb, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), req.timeout)
	defer cancel()

	opts := []client.CallOption{client.WithToken(req.token), client.WithGenerationTime(req.generationTime)}
	switch verb {
	case "add":
		err = c.Add(ctx, req.namespace, req.counter, req.delta, opts...)
	case "clear":
		err = c.Clear(ctx, req.namespace, req.counter, opts...)
	case "get":
		var count int64
		count, err = c.Get(ctx, req.namespace, req.counter)
		if err == nil {
			fmt.Fprintln(stdout, count)
		}
	}
	if err != nil {
		reportClientError(stderr, verb, req, err)
		return 1
	}
	return 0
}

// parseClientVerb parses the command line of a client verb. On a usage error or -h it returns
// nil and the exit code.
func parseClientVerb(stderr io.Writer, verb string, args []string) (*clientRequest, int) {
	spec := clientVerbs[verb]
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", defaultServer, "address of the counterd server: host:port or an http:// URL")
	timeout := fs.Duration("timeout", 10*time.Second, "overall time limit of the request, retries included")
	var token, generationTime *string
	if spec.mutation {
		token = fs.String("token", "", "idempotency token; without it a random token is made and reused on every retry. Reuse a token only to repeat the same "+verb)
		generationTime = fs.String("time", "", "event time of the "+verb+" in RFC 3339 format, for example 2026-11-01T10:00:00Z; it must be within the server's accept limit (default 5s) in the past (default now)")
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: counterd %s [flags] %s\n\n%s\n\nFlags may also follow the arguments.\n\n", verb, strings.Join(spec.positional, " "), spec.summary)
		fs.PrintDefaults()
	}

	positional, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, 0
	}
	if err != nil {
		return nil, 2
	}
	if len(positional) != len(spec.positional) {
		fmt.Fprintf(stderr, "counterd %s: expected %d arguments %s, got %d\n", verb, len(spec.positional), strings.Join(spec.positional, " "), len(positional))
		fs.Usage()
		return nil, 2
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "counterd %s: invalid --timeout %v: use a positive duration such as 10s\n", verb, *timeout)
		return nil, 2
	}

	req := &clientRequest{server: *server, namespace: positional[0], counter: positional[1], timeout: *timeout}
	if verb == "add" {
		req.delta, err = strconv.ParseInt(positional[2], 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "counterd add: invalid DELTA %q: use an integer between %d and %d\n", positional[2], int64(-1<<63), int64(1<<63-1))
			return nil, 2
		}
	}
	if spec.mutation {
		req.token = *token
		if req.token == "" {
			req.token = client.NewToken()
		}
		req.generationTime = time.Now()
		if *generationTime != "" {
			req.generationTime, err = time.Parse(time.RFC3339Nano, *generationTime)
			if err != nil {
				fmt.Fprintf(stderr, "counterd %s: invalid --time %q: use RFC 3339, for example 2026-11-01T10:00:00Z\n", verb, *generationTime)
				return nil, 2
			}
		}
	}
	return req, 0
}

// reportClientError prints what failed and what to do about it.
func reportClientError(stderr io.Writer, verb string, req *clientRequest, err error) {
	fmt.Fprintf(stderr, "counterd %s: %v\n", verb, err)

	// The server's messages for rejected requests already name the rule and the fix.
	if connect.CodeOf(err) == connect.CodeUnavailable {
		fmt.Fprintf(stderr, "Check that counterd is running at %s, or pass --server ADDR.\n", req.server)
	}

	if client.MaybeApplied(err) {
		fmt.Fprintf(stderr, "The %s may have been applied. A rerun with\n  --token %s --time %s\n"+
			"applies at most once, but the server rejects it once the namespace's accept limit (default 5s) has passed since that time.\n",
			verb, req.token, req.generationTime.Format(time.RFC3339Nano))
	}
}
