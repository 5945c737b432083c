package backends

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runSchema(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = RunSchema(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestRunSchemaPrintWithoutFlags(t *testing.T) {
	code, stdout, stderr := runSchema("print")
	if code != 0 {
		t.Fatalf("schema print exited %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, `CREATE KEYSPACE IF NOT EXISTS "default"`) {
		t.Errorf("schema print output lacks the default keyspace:\n%s", stdout)
	}
}

func TestRunSchemaPrintWithConfigAndFlags(t *testing.T) {
	path := filepath.Join(t.TempDir(), "counterd.yaml")
	if err := os.WriteFile(path, []byte("namespaces:\n  - name: plays\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runSchema("print", "--config", path, "--cassandra-replication", "dc1:3")
	if code != 0 {
		t.Fatalf("schema print exited %d: %s", code, stderr)
	}
	want := `CREATE KEYSPACE IF NOT EXISTS "plays" WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3}`
	if !strings.Contains(stdout, want) {
		t.Errorf("schema print output lacks %q:\n%s", want, stdout)
	}
}

func TestRunSchemaApplyNeedsHosts(t *testing.T) {
	code, _, stderr := runSchema("apply")
	if code != 2 || !strings.Contains(stderr, "store.cassandra.hosts") {
		t.Errorf("schema apply without hosts exited %d with %q; want 2 and a message naming store.cassandra.hosts", code, stderr)
	}
}

func TestRunSchemaApplyUnreachable(t *testing.T) {
	code, _, stderr := runSchema("apply", "--cassandra-hosts", closedPort(t))
	if code != 1 {
		t.Errorf("schema apply against a closed port exited %d (%s), want 1", code, stderr)
	}
}

func TestRunSchemaRejectsBadUsage(t *testing.T) {
	cases := [][]string{{}, {"drop"}, {"print", "extra"}, {"print", "--no-such-flag"}}
	for _, args := range cases {
		if code, _, _ := runSchema(args...); code != 2 {
			t.Errorf("schema %q exited %d, want 2", args, code)
		}
	}
}
