package main

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/counterd/counterd/counterd/loadgen"
	"github.com/counterd/counterd/counterd/store/pebblestore"
)

func TestParseProcStatus(t *testing.T) {
	status := "Name:\tcounterd\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t12\n"
	s, err := parseProcStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if s.rss != 100<<20 {
		t.Errorf("rss = %d, want 100 MiB", s.rss)
	}
	if s.peak != 200<<20 {
		t.Errorf("peak = %d, want 200 MiB", s.peak)
	}
}

func TestParseProcStatusMissingField(t *testing.T) {
	if _, err := parseProcStatus(strings.NewReader("VmRSS:\t1 kB\n")); err == nil {
		t.Error("no error for a status without VmHWM")
	}
}

func TestReadProcStatusOfSelf(t *testing.T) {
	s, err := readProcStatus(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.rss == 0 || s.peak < s.rss {
		t.Errorf("rss %d, peak %d: want a positive rss at most the peak", s.rss, s.peak)
	}
}

func TestScaleLedgerSample(t *testing.T) {
	for _, counters := range []int{40, 100000} {
		t.Run(fmt.Sprint(counters), func(t *testing.T) {
			l := newScaleLedger(counters)
			for i := 0; i < counters; i += 2 {
				l.sums[i].Add(1)
			}
			l.markAmbiguous(0)
			sample := l.sample(mrand.New(mrand.NewPCG(1, 2)), 10)
			if len(sample) != 10 {
				t.Fatalf("sample has %d counters, want 10", len(sample))
			}
			seen := map[int]bool{}
			for _, i := range sample {
				if seen[i] {
					t.Errorf("counter %d drawn twice", i)
				}
				seen[i] = true
				if i%2 != 0 || i == 0 {
					t.Errorf("counter %d drawn, which has no acknowledged add or is ambiguous", i)
				}
			}
		})
	}
}

func TestScaleLedgerAmbiguousBits(t *testing.T) {
	l := newScaleLedger(130)
	l.markAmbiguous(64)
	l.markAmbiguous(129)
	for i := range 130 {
		want := i == 64 || i == 129
		if l.isAmbiguous(i) != want {
			t.Errorf("isAmbiguous(%d) = %v, want %v", i, !want, want)
		}
	}
}

func TestMeasureDisk(t *testing.T) {
	dir := t.TempDir()
	files := map[string]int{"000001.sst": 5000, "000002.log": 3000, "MANIFEST-000001": 100}
	for name, size := range files {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u, err := measureDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	if u.Files != 3 {
		t.Errorf("Files = %d, want 3", u.Files)
	}
	if u.SSTableBytes != 5000 {
		t.Errorf("SSTableBytes = %d, want 5000", u.SSTableBytes)
	}
	if u.WALBytes < 3000 {
		t.Errorf("WALBytes = %d, want at least the log's 3000 bytes", u.WALBytes)
	}
	if u.Bytes < 8100 {
		t.Errorf("Bytes = %d, want at least the 8100 bytes written", u.Bytes)
	}
}

func TestCompactStoreEmpty(t *testing.T) {
	if _, err := compactStore(context.Background(), t.TempDir()); err != nil {
		t.Errorf("compactStore of an empty directory: %v", err)
	}
}

func TestWriteScaleFoldsLongTable(t *testing.T) {
	for _, rows := range []int{3, maxOpenRows + 1} {
		s := &scaleResult{Events: 10, Counters: 5, CounterName: "bench-x-4", Acked: 10, AddLatency: new(loadgen.Histogram)}
		for i := range rows {
			s.Intervals = append(s.Intervals, scaleIntervalStats{End: time.Duration(i+1) * scaleInterval, Length: scaleInterval, Acked: 1})
		}
		var b strings.Builder
		(&report{Scale: s}).writeScale(&b, "BENCHMARKS.md")

		folded := strings.Contains(b.String(), "<details>")
		if folded != (rows > maxOpenRows) {
			t.Errorf("%d rows: folded = %v, want %v", rows, folded, rows > maxOpenRows)
		}
		if got := strings.Count(b.String(), "\n| "); got < rows+3 {
			t.Errorf("%d rows: %d table lines, want the rows plus the targets table", rows, got)
		}
	}
}

func TestDescribeStopLinksTheKeptLog(t *testing.T) {
	for _, tc := range []struct {
		st   stopResult
		want string
	}{
		{stopResult{Took: 1340 * time.Millisecond}, "exited in 1.3s"},
		{stopResult{Took: 20 * time.Second, Overran: true}, "did not exit in time and was stopped after 20.0s"},
		{stopResult{Took: 16 * time.Second, Overran: true, KeptLog: "/repo/docs/benchmarks/counterd-41-late-stop.log"},
			"[counterd-41-late-stop.log](docs/benchmarks/counterd-41-late-stop.log)"},
	} {
		if got := describeStop(tc.st, "/repo/BENCHMARKS.md"); !strings.Contains(got, tc.want) {
			t.Errorf("describeStop(%+v) = %q, want it to contain %q", tc.st, got, tc.want)
		}
	}
}

func TestWriteScaleTableBytesPerAdd(t *testing.T) {
	s := &scaleResult{Events: 10, Counters: 5, CounterName: "bench-x-4", Acked: 10, AddLatency: new(loadgen.Histogram),
		Tables: []pebblestore.TableUsage{{Table: "events", Bytes: 200}, {Table: "tokens", Bytes: 305}}}
	var b strings.Builder
	(&report{Scale: s}).writeScale(&b, "BENCHMARKS.md")
	if want := "events 20.0, tokens 30.5"; !strings.Contains(b.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, b.String())
	}
}

func TestProfileScaleStartsAtThreshold(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		http.Error(w, "no profiles here", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	var acked atomic.Int64
	done := make(chan error, 1)
	go func() {
		done <- profileScale(context.Background(), addr, "counterd", t.TempDir(), 10, &acked, make(chan struct{}), &report{})
	}()
	time.Sleep(300 * time.Millisecond)
	if n := requests.Load(); n != 0 {
		t.Fatalf("%d profile requests before the threshold, want 0", n)
	}
	acked.Store(10)
	err := <-done
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("profileScale = %v, want the server's 503", err)
	}
	if n := requests.Load(); n != 1 {
		t.Errorf("%d profile requests after the threshold, want 1", n)
	}
}

func TestProfileScaleSkippedWhenLoadEnds(t *testing.T) {
	loadDone := make(chan struct{})
	close(loadDone)
	var acked atomic.Int64
	// The address is never dialled: the load ends before the threshold.
	if err := profileScale(context.Background(), "127.0.0.1:1", "counterd", t.TempDir(), 10, &acked, loadDone, &report{}); err != nil {
		t.Errorf("profileScale after the load ended = %v, want nil", err)
	}
}

func TestParseRollupStateSumsLabels(t *testing.T) {
	text := `# HELP counterd_rollup_queue_depth Counters waiting.
# TYPE counterd_rollup_queue_depth gauge
counterd_rollup_queue_depth{namespace="a"} 65182
counterd_rollup_queue_depth{namespace="b b"} 18
counterd_rollup_hints_dropped_total{namespace="a"} 3.5e+06
counterd_sweep_lag_seconds{namespace="a"} 18.110150323
counterd_rollups_total{namespace="a",trigger="queue"} 4.727307e+06
counterd_rollups_total{namespace="a",trigger="sweep"} 131659
counterd_rollups_total{namespace="b b",trigger="sweep"} 1
counterd_sweep_trusted_total{namespace="a"} 1.5276019e+07
counterd_rollup_held_folds_total{namespace="a"} 4.5e+06
counterd_store_block_cache_hits_total 9.5e+07
counterd_store_block_cache_misses_total 5e+06
`
	st, err := parseRollupState(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		field     string
		got, want float64
	}{
		{"Queued", st.Queued, 65200},
		{"HintsDropped", st.HintsDropped, 3.5e6},
		{"SweepLag", st.SweepLag, 18.110150323},
		{"QueueRollups", st.QueueRollups, 4727307},
		{"SweepRollups", st.SweepRollups, 131660},
		{"SweepTrusted", st.SweepTrusted, 15276019},
		{"HeldFolds", st.HeldFolds, 4.5e6},
		{"BlockCacheHits", st.BlockCacheHits, 9.5e7},
		{"BlockCacheMisses", st.BlockCacheMisses, 5e6},
	} {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
		}
	}
}

func TestParseRollupStateRejectsBadValue(t *testing.T) {
	_, err := parseRollupState(strings.NewReader("counterd_rollup_queue_depth{namespace=\"a\"} many\n"))
	if err == nil || !strings.Contains(err.Error(), "many") {
		t.Errorf("parseRollupState = %v, want an error naming the value", err)
	}
}
