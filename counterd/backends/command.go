package backends

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/counterd/counterd/counterd/config"
)

// RunSchema runs `counterd schema print` or `counterd schema apply` with args, the arguments
// after "schema", and returns the process exit code: 0 on success, 1 when applying failed and
// 2 for invalid arguments or configuration. print writes the CQL to stdout and connects to
// nothing; with no flags it prints the schema of the namespace "default".
func RunSchema(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	usage := func() {
		fmt.Fprintf(stderr, "Usage: counterd schema print|apply [flags]\n\n"+
			"print writes the CQL that creates the Cassandra keyspace and tables of each namespace.\n"+
			"apply runs it against the cluster of the configuration; it never changes the\n"+
			"replication of an existing keyspace. Run counterd schema print -h for the flags.\n")
	}
	if len(args) == 0 {
		usage()
		return 2
	}
	verb := args[0]
	if verb == "-h" || verb == "--help" || verb == "help" {
		usage()
		return 0
	}
	if verb != "print" && verb != "apply" {
		fmt.Fprintf(stderr, "counterd schema: unknown command %q; use print or apply\n", verb)
		return 2
	}

	fs := flag.NewFlagSet("schema "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	configFile := fs.String("config", "", "YAML config file with the store settings and namespaces; without it the namespace \"default\" is used")
	var backendFlags Flags
	backendFlags.Register(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "counterd schema %s: unexpected argument %q; it takes flags only\n", verb, fs.Arg(0))
		return 2
	}

	cfg, err := config.Load(*configFile)
	if err == nil {
		err = schemaFlags(&backendFlags, verb).Apply(cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "counterd schema %s: %v\n", verb, err)
		return 2
	}

	if verb == "print" {
		if err := PrintSchema(stdout, cfg); err != nil {
			fmt.Fprintf(stderr, "counterd schema print: %v\n", err)
			return 2
		}
		return 0
	}
	if err := ApplySchema(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "counterd schema apply: %v\n", err)
		return 1
	}
	return 0
}

// schemaFlags returns f with the store type set to Cassandra for apply, so that
// --cassandra-hosts alone is enough and the configuration is validated as a Cassandra one.
func schemaFlags(f *Flags, verb string) *Flags {
	if verb == "apply" && f.Store == "" {
		f.Store = config.StoreCassandra
	}
	return f
}
