// Command counterd serves exact, durable, retry-safe counters, and is also their command-line
// client and load generator.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/counterd/counterd/counterd/backends"
)

const usage = `counterd serves exact, durable, retry-safe counters.

Usage:
  counterd [serve] [flags]                  run the server (the default verb)
  counterd add NAMESPACE COUNTER DELTA      add DELTA to a counter
  counterd get NAMESPACE COUNTER            print a counter's value
  counterd clear NAMESPACE COUNTER          reset a counter to zero
  counterd bench [flags]                    run the load generator against a server
  counterd schema print|apply [flags]       print or apply the Cassandra schema

Run "counterd VERB -h" for the flags of a verb, such as "counterd serve -h".
`

func main() {
	os.Exit(run(os.Args[1:]))
}

// run dispatches to a verb and returns the process exit code.
func run(args []string) int {
	verb := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		verb, args = args[0], args[1:]
	} else if len(args) == 1 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		// A bare "counterd -h" lists the verbs. "counterd serve -h" lists serve's flags.
		fmt.Print(usage)
		return 0
	}
	switch verb {
	case "serve":
		return runServe(args)
	case "add":
		return runAdd(args)
	case "get":
		return runGet(args)
	case "clear":
		return runClear(args)
	case "bench":
		return runBench(args)
	case "schema":
		return backends.RunSchema(context.Background(), args, os.Stdout, os.Stderr)
	case "help":
		fmt.Print(usage)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "counterd: unknown verb %q\n\n%s", verb, usage)
		return 2
	}
}
