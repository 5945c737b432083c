package schema

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestStatementsGolden(t *testing.T) {
	cases := []struct {
		golden string
		opts   Options
	}{
		{"default.cql", Options{Namespace: config.Namespace{Name: "default"}}},
		{"network_topology.cql", Options{
			Keyspace:    "plays_ks",
			Replication: Replication{DataCenters: map[string]int{"us-east-1": 3, "eu_west": 2}},
			Namespace: config.Namespace{
				Name:         "plays",
				TimeBucket:   config.Duration{Duration: 10 * time.Minute},
				EventBuckets: 16,
				Retention:    config.Duration{Duration: 30 * 24 * time.Hour},
			},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.golden, func(t *testing.T) {
			stmts, err := Statements(tc.opts)
			if err != nil {
				t.Fatalf("Statements: %v", err)
			}
			got := strings.Join(stmts, ";\n\n") + ";\n"
			path := filepath.Join("testdata", tc.golden)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (run go test -update to create it): %v", err)
			}
			if got != string(want) {
				t.Errorf("CQL differs from %s (run go test -update and review the diff):\ngot:\n%s", path, got)
			}
		})
	}
}

func TestStatementsKeyspaceChoice(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"options keyspace wins", Options{Keyspace: "a", Namespace: config.Namespace{Name: "b", Keyspace: "c"}}, "a"},
		{"namespace keyspace", Options{Namespace: config.Namespace{Name: "b", Keyspace: "c"}}, "c"},
		{"namespace name", Options{Namespace: config.Namespace{Name: "b"}}, "b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stmts, err := Statements(tc.opts)
			if err != nil {
				t.Fatalf("Statements: %v", err)
			}
			prefix := `CREATE KEYSPACE IF NOT EXISTS "` + tc.want + `" WITH`
			if !strings.HasPrefix(stmts[0], prefix) {
				t.Errorf("first statement = %q, want prefix %q", stmts[0], prefix)
			}
		})
	}
}

func TestStatementsQuoteReservedKeyspace(t *testing.T) {
	stmts, err := Statements(Options{Keyspace: "select"})
	if err != nil {
		t.Fatalf("Statements: %v", err)
	}
	for _, stmt := range stmts {
		if strings.Contains(stmt, " select.") || strings.Contains(stmt, " select ") {
			t.Errorf("statement uses the keyspace select unquoted: %s", stmt)
		}
		if !strings.Contains(stmt, `"select"`) {
			t.Errorf("statement does not name the quoted keyspace: %s", stmt)
		}
	}
}

func TestStatementsRejectInvalidInput(t *testing.T) {
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"empty keyspace", Options{}, `invalid keyspace name ""`},
		{"keyspace injection", Options{Keyspace: "ks; DROP KEYSPACE system"}, "invalid keyspace name"},
		{"upper case keyspace", Options{Keyspace: "Plays"}, "invalid keyspace name"},
		{"keyspace too long", Options{Keyspace: strings.Repeat("k", 49)}, "invalid keyspace name"},
		{"datacenter quote", Options{Keyspace: "ks", Replication: Replication{DataCenters: map[string]int{"dc1': 1, 'x": 3}}}, "invalid datacenter name"},
		{"datacenter empty", Options{Keyspace: "ks", Replication: Replication{DataCenters: map[string]int{"": 3}}}, "invalid datacenter name"},
		{"datacenter factor zero", Options{Keyspace: "ks", Replication: Replication{DataCenters: map[string]int{"dc1": 0}}}, "invalid replication factor 0"},
		{"simple factor too large", Options{Keyspace: "ks", Replication: Replication{SimpleFactor: 33}}, "invalid replication factor 33"},
		{"simple factor negative", Options{Keyspace: "ks", Replication: Replication{SimpleFactor: -1}}, "invalid replication factor -1"},
		{"invalid namespace", Options{Keyspace: "ks", Namespace: config.Namespace{Name: "ns", EventBuckets: 5000}}, "eventBuckets"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Statements(tc.opts)
			if err == nil {
				t.Fatalf("Statements(%+v) returned no error, want one containing %q", tc.opts, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestReplicationCQL(t *testing.T) {
	cases := []struct {
		name string
		r    Replication
		want string
	}{
		{"zero value", Replication{}, "{'class': 'SimpleStrategy', 'replication_factor': 1}"},
		{"simple", Replication{SimpleFactor: 3}, "{'class': 'SimpleStrategy', 'replication_factor': 3}"},
		{"datacenters sorted", Replication{DataCenters: map[string]int{"dc2": 2, "dc1": 3}}, "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"},
		{"datacenters ignore simple factor", Replication{DataCenters: map[string]int{"dc1": 3}, SimpleFactor: 5}, "{'class': 'NetworkTopologyStrategy', 'dc1': 3}"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.r.cql()
			if err != nil {
				t.Fatalf("cql: %v", err)
			}
			if got != tc.want {
				t.Errorf("cql = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseReplication(t *testing.T) {
	cases := []struct {
		name     string
		settings map[string]string
		want     Replication
	}{
		{"simple", map[string]string{"class": "org.apache.cassandra.locator.SimpleStrategy", "replication_factor": "3"}, Replication{SimpleFactor: 3}},
		{"network topology", map[string]string{"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "dc1": "3", "dc2": "2"}, Replication{DataCenters: map[string]int{"dc1": 3, "dc2": 2}}},
		{"transient replicas", map[string]string{"class": "org.apache.cassandra.locator.NetworkTopologyStrategy", "dc1": "3/1"}, Replication{DataCenters: map[string]int{"dc1": 3}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseReplication(tc.settings)
			if err != nil {
				t.Fatalf("parseReplication: %v", err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("parseReplication = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestParseReplicationRejectsUnknownClass(t *testing.T) {
	_, err := parseReplication(map[string]string{"class": "org.apache.cassandra.locator.LocalStrategy"})
	if err == nil {
		t.Fatal("parseReplication accepted LocalStrategy, want an error")
	}
}

func TestCompactionWindow(t *testing.T) {
	cases := []struct {
		ttl      time.Duration
		wantUnit string
		wantSize int64
	}{
		{2 * time.Minute, "MINUTES", 1},
		{24 * time.Hour, "HOURS", 1},
		{7 * 24 * time.Hour, "HOURS", 7},
		{30 * 24 * time.Hour, "DAYS", 2},
		{10 * 365 * 24 * time.Hour, "DAYS", 153},
	}
	for _, tc := range cases {
		unit, size := compactionWindow(tc.ttl)
		if unit != tc.wantUnit || size != tc.wantSize {
			t.Errorf("compactionWindow(%s) = %d %s, want %d %s", tc.ttl, size, unit, tc.wantSize, tc.wantUnit)
		}
	}
}

func TestLayoutCheck(t *testing.T) {
	recorded := Layout{TimeBucket: time.Minute, EventBuckets: 4, WrittenIndexShards: WrittenIndexShards}
	if err := recorded.Check("ks", config.Namespace{Name: "ns"}); err != nil {
		t.Errorf("Check with default settings: %v", err)
	}

	err := recorded.Check("ks", config.Namespace{Name: "ns", EventBuckets: 8})
	if err == nil || !strings.Contains(err.Error(), "eventBuckets 4") {
		t.Errorf("Check with changed eventBuckets = %v, want an error naming eventBuckets 4", err)
	}
	err = recorded.Check("ks", config.Namespace{Name: "ns", TimeBucket: config.Duration{Duration: time.Hour}})
	if err == nil || !strings.Contains(err.Error(), "timeBucket 1m0s") {
		t.Errorf("Check with changed timeBucket = %v, want an error naming timeBucket 1m0s", err)
	}
}

func TestStatementsSkipAlterOfNewTables(t *testing.T) {
	opts := Options{Keyspace: "ks"}
	all, err := statements(opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := statements(opts, map[string]bool{})
	if err != nil {
		t.Fatal(err)
	}
	someExist, err := statements(opts, map[string]bool{TableEvents: true})
	if err != nil {
		t.Fatal(err)
	}

	countAlters := func(stmts []string) int {
		n := 0
		for _, s := range stmts {
			if strings.HasPrefix(s, "ALTER TABLE") {
				n++
			}
		}
		return n
	}
	if got := countAlters(fresh); got != 0 {
		t.Errorf("statements for a new keyspace hold %d ALTER TABLE, want 0", got)
	}
	if got := countAlters(someExist); got != 1 {
		t.Errorf("statements with only the events table existing hold %d ALTER TABLE, want 1", got)
	}
	if len(all)-countAlters(all) != len(fresh) {
		t.Errorf("leaving out ALTER TABLE dropped other statements: %d of %d remain", len(fresh), len(all))
	}
}
