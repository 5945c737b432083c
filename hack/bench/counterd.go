package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/counterd/counterd/counterd/client"
	"github.com/counterd/counterd/counterd/config"
	"github.com/counterd/counterd/counterd/loadgen"
)

// counterdTarget sends the workload to counterd through one counterd/client shared by every
// worker, with the token and generation time that counterd/loadgen sends.
type counterdTarget struct {
	client    *client.Client
	namespace string
	addr      string
}

// newCounterdTarget returns a target for the server at addr, serving the default namespace.
func newCounterdTarget(addr string) (*counterdTarget, error) {
	// Batching is the client's setup for many concurrent callers: their adds and gets share
	// AddCounts and GetCounts requests, and so the server's syncs. With few requests in
	// flight, the Connect protocol over HTTP/1.1 costs less CPU per request than HTTP/2.
	c, err := client.New(addr, client.WithBatching(0, 0), client.WithConnectProtocol(), client.WithHTTP1())
	if err != nil {
		return nil, fmt.Errorf("create a counterd client for %s: %w", addr, err)
	}
	return &counterdTarget{client: c, namespace: config.DefaultNamespace, addr: addr}, nil
}

func (c *counterdTarget) Add(ctx context.Context, counter, token string, generated time.Time, delta int64) error {
	return c.client.Add(ctx, c.namespace, counter, delta, client.WithToken(token), client.WithGenerationTime(generated))
}

func (c *counterdTarget) Get(ctx context.Context, counter string) (int64, error) {
	return c.client.Get(ctx, c.namespace, counter)
}

// ReadAll gets the counters with concurrency requests in flight and returns the first error.
func (c *counterdTarget) ReadAll(ctx context.Context, counters []string) ([]int64, error) {
	readings := readCounters(ctx, c, counters, concurrency)
	values := make([]int64, len(counters))
	for k, r := range readings {
		if r.err != nil {
			return nil, fmt.Errorf("get %s: %w", counters[k], r.err)
		}
		values[k] = r.value
	}
	return values, nil
}

func (c *counterdTarget) Idempotent() bool { return true }

// sampleMetrics reads counterd's /metrics.
func (c *counterdTarget) sampleMetrics(ctx context.Context) (map[string]float64, error) {
	body, err := getOK(ctx, "http://"+c.addr+"/metrics")
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return parseMetrics(body)
}

func (c *counterdTarget) MaybeApplied(err error) bool { return client.MaybeApplied(err) }

// AcceptLimit returns the default namespace's accept limit, because the harness starts
// counterd without a config file.
func (c *counterdTarget) AcceptLimit() time.Duration { return config.DefaultAcceptLimit }

// profileSpec is one profile that the harness fetches from counterd's /debug/pprof/.
type profileSpec struct {
	// Endpoint is the path under /debug/pprof/, "profile" for CPU or "allocs".
	Endpoint string
	File     string
	Title    string
	// Order places the profile in the report.
	Order int
	// TopArgs are extra arguments of go tool pprof -top, such as the sample type.
	TopArgs []string
}

// savedProfile is a profile saved next to the results, with its top entries.
type savedProfile struct {
	Order   int
	Title   string
	Path    string
	Seconds int
	Top     string
}

// profilesFor returns the profiles to take during workload number i: a CPU and an allocation
// profile of the write-heavy run and a CPU profile of the read-heavy run.
func profilesFor(i int) []profileSpec {
	switch i {
	case 0:
		return []profileSpec{
			{Endpoint: "profile", File: "counterd-cpu.pprof", Title: "CPU, 90% adds run", Order: 0},
			{Endpoint: "allocs", File: "counterd-allocs.pprof", Title: "allocations, 90% adds run", Order: 1,
				TopArgs: []string{"-sample_index=alloc_space"}},
		}
	case 1:
		return []profileSpec{{Endpoint: "profile", File: "counterd-cpu-read-heavy.pprof", Title: "CPU, 90% gets run", Order: 2}}
	}
	return nil
}

// runCounterd starts counterd, runs each workload through the harness's driver
// and, in the first round, takes the profiles of profilesFor during the runs.
func runCounterd(ctx context.Context, sup *supervisor, binary string, serveFlags []string, tmp, artifacts string, loads []workload, rep *report) error {
	p, addr, _, err := startCounterd(ctx, sup, binary, serveFlags, tmp, "")
	if err != nil {
		return err
	}
	defer sup.stop(p)
	rep.addConfig(systemConfig{
		System: sysCounterd,
		Lines: []string{
			"`" + strings.Join(append([]string{"counterd serve --listen", addr, "--data-dir TMP --pprof"}, serveFlags...), " ") + "`, no config file: " +
				"namespace `default`, EventuallyConsistent, accept limit " + config.DefaultAcceptLimit.String() +
				", every add synced before it is acknowledged (group commit)",
			goRuntimeSettings(os.Getenv),
		},
		Client: "the harness's driver with one counterd/client shared by the 64 workers, speaking the Connect protocol with binary protobuf over HTTP/1.1 connections " +
			"(`client.WithBatching(0, 0)`, `client.WithConnectProtocol()` and `client.WithHTTP1()`). " +
			"Concurrent adds and gets share AddCounts and GetCounts requests of up to 500 items, with at most 2 in flight. " +
			"Each add carries its token and generation time, the same for both copies of a re-sent add, as counterd/loadgen sends them",
	})
	t, err := newCounterdTarget(addr)
	if err != nil {
		return err
	}

	for i, w := range loads {
		var specs []profileSpec
		if rep.round == 1 {
			specs = profilesFor(i)
		}
		profiles := make(chan error, len(specs))
		for _, spec := range specs {
			go func() { profiles <- saveProfile(ctx, addr, binary, artifacts, spec, w.Duration, rep) }()
		}
		err := runWorkload(ctx, t, sysCounterd, "standalone, synced adds", w, rep)
		for range specs {
			if perr := <-profiles; perr != nil {
				slog.Warn("profile failed", "workload", w.Name, "err", perr)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// saveProfile fetches a profile of counterd that starts a quarter into a run of length
// duration and ends before the run's load phase does: a CPU profile, or the allocations made
// in that interval. It saves the profile in artifacts and adds it with its top entries to rep.
func saveProfile(ctx context.Context, addr, binary, artifacts string, spec profileSpec, duration time.Duration, rep *report) error {
	seconds := min(maxProfileSeconds, int(duration.Seconds()/2))
	if seconds < 1 {
		return fmt.Errorf("run of %v is too short for a profile of at least one second", duration)
	}
	if !loadgen.SleepContext(ctx, duration/4) {
		return ctx.Err()
	}
	return fetchProfile(ctx, addr, binary, artifacts, spec, seconds, rep)
}

// fetchProfile fetches a profile of counterd over the next seconds, saves it in artifacts and
// adds it with its top entries to rep.
func fetchProfile(ctx context.Context, addr, binary, artifacts string, spec profileSpec, seconds int, rep *report) error {
	path := filepath.Join(artifacts, spec.File)
	var err error
	if spec.Endpoint == "allocs" {
		err = fetchAllocations(ctx, addr, path, seconds)
	} else {
		err = download(ctx, fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", addr, spec.Endpoint, seconds), path)
	}
	if err != nil {
		return err
	}

	args := append([]string{"tool", "pprof", "-top", "-nodecount=25"}, spec.TopArgs...)
	args = append(args, binary, path)
	top, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof -top %s failed: %w\n%s", path, err, top)
	}
	rep.addProfile(savedProfile{Order: spec.Order, Title: spec.Title, Path: path, Seconds: seconds, Top: string(top)})
	return nil
}

// fetchAllocations saves to path the allocations that counterd makes over the next seconds.
// Go adds allocations to its profile only when a garbage collection ends. With a high GC heap
// floor, no collection may end within the interval, and a profile taken with the "seconds"
// parameter would be empty. So each of the two snapshots makes counterd collect first, and go
// tool pprof subtracts the first from the second. net/http/pprof honors "gc=1" only for the
// heap profile, which holds the same samples as the allocs profile.
func fetchAllocations(ctx context.Context, addr, path string, seconds int) error {
	url := fmt.Sprintf("http://%s/debug/pprof/heap?gc=1", addr)
	start := path + ".start"
	end := path + ".end"
	defer os.Remove(start)
	defer os.Remove(end)

	if err := download(ctx, url, start); err != nil {
		return err
	}
	if !loadgen.SleepContext(ctx, time.Duration(seconds)*time.Second) {
		return ctx.Err()
	}
	if err := download(ctx, url, end); err != nil {
		return err
	}
	out, err := exec.CommandContext(ctx, "go", "tool", "pprof", "-proto", "-output", path, "-base", start, end).CombinedOutput()
	if err != nil {
		return fmt.Errorf("go tool pprof -base %s %s failed: %w\n%s", start, end, err, out)
	}
	return nil
}

// download saves the body of a GET request for url to path.
func download(ctx context.Context, url, path string) error {
	body, err := getOK(ctx, url)
	if err != nil {
		return err
	}
	defer body.Close()

	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// getOK sends a GET request for url and returns the response body, or an error when the
// status is not 200 OK. The caller closes the body.
func getOK(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s returned %s", url, resp.Status)
	}
	return resp.Body, nil
}

// defaultServeFlags are the flags of every `counterd serve` unless --counterd-flags replaces
// them. The benchmark machine has memory to spare, so counterd gets the larger GC heap floor
// that a user who wants the lowest get latency would set. Its collections then come about four
// times less often under the read-heavy load. Each collection also takes CPU from the load
// generator on the same two cores. Once the live heap exceeds half the floor, it changes nothing.
const defaultServeFlags = "--gc-heap-floor-mib 1024"

// goRuntimeSettings describes the Go runtime settings that counterd inherits from the
// harness's environment: GOGC set there turns counterd's GC heap floor off.
func goRuntimeSettings(getenv func(string) string) string {
	var parts []string
	if gogc := getenv("GOGC"); gogc != "" {
		parts = append(parts, "`GOGC="+gogc+"` from the environment, so counterd's GC heap floor is off")
	} else {
		parts = append(parts, "`GOGC` unset, so counterd's GC heap floor applies (`gcHeapFloorMiB`: "+strconv.Itoa(config.DefaultGCHeapFloorMiB)+" MiB by default, or what `--gc-heap-floor-mib` in the command above sets)")
	}
	if limit := getenv("GOMEMLIMIT"); limit != "" {
		parts = append(parts, "`GOMEMLIMIT="+limit+"` from the environment")
	}
	return "Go runtime: " + strings.Join(parts, "; ")
}
