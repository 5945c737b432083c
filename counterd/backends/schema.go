package backends

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/schema"
)

// minSchemaTimeout is the smallest per-query timeout used for schema changes, which can take
// seconds on a loaded cluster even when queries take milliseconds.
const minSchemaTimeout = 30 * time.Second

// PrintSchema writes the CQL that creates the keyspace and tables of every namespace of cfg,
// with the replication of cfg.Store.Cassandra. It connects to nothing, so it also works with
// the default configuration, which has the one namespace "default".
func PrintSchema(w io.Writer, cfg *config.Config) error {
	for i, n := range cfg.Namespaces {
		stmts, err := schema.Statements(schemaOptions(cfg, n))
		if err != nil {
			return fmt.Errorf("namespace %q: %w", n.Name, err)
		}
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "-- Namespace %s, keyspace %s\n", n.Name, n.Keyspace)
		if _, err := io.WriteString(w, strings.Join(stmts, ";\n\n")+";\n"); err != nil {
			return err
		}
	}
	return nil
}

// ApplySchema creates the keyspace and tables of every namespace of cfg in the Cassandra
// cluster of cfg.Store.Cassandra. It never changes the replication of an existing keyspace:
// when that differs from the configuration, it logs a warning with the ALTER KEYSPACE to run.
func ApplySchema(ctx context.Context, cfg *config.Config) error {
	c := cfg.Store.Cassandra
	if len(c.Hosts) == 0 {
		return fmt.Errorf("store.cassandra.hosts: no Cassandra contact points; set them in the config file or with --cassandra-hosts")
	}
	c.Timeout.Duration = max(c.Timeout.Duration, minSchemaTimeout)
	username, password, err := c.Credentials()
	if err != nil {
		return err
	}
	session, err := schema.Connect(c, username, password)
	if err != nil {
		return err
	}
	defer session.Close()

	logger := slog.Default()
	for _, n := range cfg.Namespaces {
		opts := schemaOptions(cfg, n)
		current, exists, err := schema.ReadReplication(ctx, session, n.Keyspace)
		if err != nil {
			return err
		}
		if err := schema.Apply(ctx, session, opts); err != nil {
			return fmt.Errorf("namespace %q: %w", n.Name, err)
		}
		if exists && !current.Equal(opts.Replication) {
			logger.Warn("Keyspace replication differs from the configuration and was left unchanged",
				"keyspace", n.Keyspace, "current", current.String(), "configured", opts.Replication.String(),
				"fix", "run ALTER KEYSPACE with the configured replication, then nodetool repair -full on every node")
		}
		logger.Info("Applied the schema", "namespace", n.Name, "keyspace", n.Keyspace, "created", !exists)
	}
	return nil
}

func schemaOptions(cfg *config.Config, n config.Namespace) schema.Options {
	return schema.Options{
		Keyspace:    n.Keyspace,
		Replication: schema.Replication{DataCenters: cfg.Store.Cassandra.Replication},
		Namespace:   n,
	}
}
