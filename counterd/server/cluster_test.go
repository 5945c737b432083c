package server_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/counterd/counterd/counterd/cache"
	"github.com/counterd/counterd/counterd/config"
	counterv1 "github.com/counterd/counterd/counterd/gen/counter/v1"
	"github.com/counterd/counterd/counterd/gen/counter/v1/counterv1connect"
	"github.com/counterd/counterd/counterd/rollup"
	"github.com/counterd/counterd/counterd/server"
	"github.com/counterd/counterd/counterd/store"
	"github.com/counterd/counterd/counterd/store/pebblestore"
)

// clusterNamespaces converge fast: a counter is exact about accept limit + skew margin + one
// sweep slice + one sweep interval after its last add.
const clusterNamespaces = `
namespaces:
  - name: ec
    acceptLimit: 300ms
    maxClockSkew: 100ms
    rollup:
      skewMargin: 100ms
      coalesce: 50ms
`

// convergenceDeadline bounds the wait for counters to converge. It is far above the expected
// time (accept limit + skew margin + one sweep slice + one sweep interval, under 3 s here), so
// a slow machine does not fail the test; the time actually taken is logged.
const convergenceDeadline = 60 * time.Second

// waitConverged polls the stored checkpoints, without any read through the API, until every
// counter of namespace ec has its acknowledged value, and logs how long that took.
func waitConverged(t *testing.T, st store.Store, want map[string]int64) {
	t.Helper()
	start := time.Now()
	for {
		pending := 0
		for counter, w := range want {
			cp, err := st.ReadCheckpoint(context.Background(), store.Key{Namespace: "ec", Counter: counter})
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := cp.Count.Clamp(); got != w {
				pending++
			}
		}
		if pending == 0 {
			t.Logf("all %d counters converged %s after the last add", len(want), time.Since(start).Round(10*time.Millisecond))
			return
		}
		if time.Since(start) > convergenceDeadline {
			t.Errorf("%d of %d counters still differ from their acknowledged adds after %s", pending, len(want), convergenceDeadline)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// members is a worker list that the test changes, as a DNS refresh would.
type members struct {
	mu   sync.Mutex
	list []string
}

func (m *members) Members() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.list)
}

func (m *members) set(list []string) {
	m.mu.Lock()
	m.list = slices.Clone(list)
	m.mu.Unlock()
}

// harness runs gateways and rollup workers in one process on loopback ports, sharing one
// store, one cache and one set of in-flight write holds, as a cluster shares Cassandra and
// memcached.
type harness struct {
	t        *testing.T
	store    store.Store
	cache    cache.Cache
	holds    *rollup.Holds
	workerMs *members // what workers see
	gateMs   *members // what gateways see
	workers  map[string]*server.Server
	gateways []*server.Server
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	cfg, err := config.Parse([]byte(clusterNamespaces))
	if err != nil {
		t.Fatal(err)
	}
	st, err := pebblestore.Open(t.TempDir(), store.Options{Namespaces: cfg.Namespaces}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{
		t: t, store: st, cache: cache.NewMemory(0), holds: rollup.NewHolds(),
		workerMs: &members{}, gateMs: &members{}, workers: map[string]*server.Server{},
	}
	t.Cleanup(h.stopAll)
	return h
}

func (h *harness) config(role, addr string) *config.Config {
	cfg, err := config.Parse([]byte(clusterNamespaces))
	if err != nil {
		h.t.Fatal(err)
	}
	cfg.Listen = addr
	cfg.Cluster.Role = role
	cfg.Cluster.RollupWorkers = []string{"127.0.0.1:1"} // replaced by Options.Membership
	if role == config.RoleRollup {
		cfg.Cluster.Advertise = addr
	}
	return cfg
}

// startServer wraps the store and cache so that closing one server leaves them open for
// the others.
func (h *harness) start(role, addr string, ms *members) *server.Server {
	h.t.Helper()
	srv, err := server.Start(context.Background(), server.Options{
		Config: h.config(role, addr), Store: sharedStore{h.store}, Cache: sharedCache{h.cache},
		Holds: h.holds, Membership: ms,
	})
	if err != nil {
		h.t.Fatalf("failed to start a %s on %s: %v", role, addr, err)
	}
	return srv
}

func (h *harness) addWorker(addr string) string {
	h.t.Helper()
	if addr == "" {
		addr = freeAddr(h.t)
	}
	h.workers[addr] = h.start(config.RoleRollup, addr, h.workerMs)
	h.publish()
	return addr
}

func (h *harness) addGateway() counterv1connect.CounterServiceClient {
	h.t.Helper()
	srv := h.start(config.RoleGateway, "127.0.0.1:0", h.gateMs)
	h.gateways = append(h.gateways, srv)
	return grpcClient(srv)
}

// stopWorker stops a worker gracefully (kill=false, as SIGTERM does) or abruptly.
func (h *harness) stopWorker(addr string, kill bool) {
	h.t.Helper()
	srv := h.workers[addr]
	delete(h.workers, addr)
	if kill {
		srv.Kill()
	} else if err := srv.Close(); err != nil {
		h.t.Errorf("worker %s did not stop cleanly: %v", addr, err)
	}
	h.publish()
}

// publish gives every member the current list of workers.
func (h *harness) publish() {
	var list []string
	for addr := range h.workers {
		list = append(list, addr)
	}
	slices.Sort(list)
	h.workerMs.set(list)
	h.gateMs.set(list)
}

func (h *harness) stopAll() {
	for addr, srv := range h.workers {
		_ = srv.Close()
		delete(h.workers, addr)
	}
	for _, g := range h.gateways {
		_ = g.Close()
	}
	h.gateways = nil
	_ = h.store.Close()
}

type sharedStore struct{ store.Store }

func (sharedStore) Close() error { return nil }

type sharedCache struct{ cache.Cache }

func (sharedCache) Close() error { return nil }

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// load adds to counters through the gateways until stopped, and records what was acknowledged.
type load struct {
	mu    sync.Mutex
	acked map[string]int64
	seq   atomic.Int64
	stop  chan struct{}
	wg    sync.WaitGroup
	errs  atomic.Int64
}

func startLoad(t *testing.T, clients []counterv1connect.CounterServiceClient, counters, writers int) *load {
	l := &load{acked: map[string]int64{}, stop: make(chan struct{})}
	for w := range writers {
		l.wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			client := clients[w%len(clients)]
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				counter := fmt.Sprint("c", rng.IntN(counters))
				delta := rng.Int64N(9) + 1
				req := addReq("ec", counter, delta, fmt.Sprint("tok-", l.seq.Add(1)))
				for {
					_, err := client.AddCount(context.Background(), req)
					if err == nil {
						break
					}
					if code := connect.CodeOf(err); code == connect.CodeInvalidArgument || code == connect.CodeFailedPrecondition {
						t.Errorf("add: %v", err)
						return
					}
					l.errs.Add(1)
					time.Sleep(5 * time.Millisecond)
				}
				l.mu.Lock()
				l.acked[counter] += delta
				l.mu.Unlock()
			}
		})
	}
	return l
}

func (l *load) finish() map[string]int64 {
	close(l.stop)
	l.wg.Wait()
	return l.acked
}

// monotonicReader reads counters through a gateway until stopped and reports any read lower
// than an earlier one; with only positive adds, a read must never go backwards.
func monotonicReader(t *testing.T, client counterv1connect.CounterServiceClient, counters int, stop chan struct{}, wg *sync.WaitGroup) {
	wg.Go(func() {
		last := map[string]int64{}
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			counter := fmt.Sprint("c", i%counters)
			res, err := client.GetCount(context.Background(), connect.NewRequest(&counterv1.GetCountRequest{Namespace: "ec", CounterName: counter}))
			if err != nil {
				continue
			}
			if res.Msg.Count < last[counter] {
				t.Errorf("read of %s went backwards: %d after %d", counter, res.Msg.Count, last[counter])
			}
			last[counter] = res.Msg.Count
			time.Sleep(time.Millisecond)
		}
	})
}

// checkpointWatcher samples stored checkpoints and reports any that moved back.
func checkpointWatcher(t *testing.T, st store.Store, counters int, stop chan struct{}, wg *sync.WaitGroup) {
	wg.Go(func() {
		last := map[string]int64{}
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			for i := range counters {
				counter := fmt.Sprint("c", i)
				cp, err := st.ReadCheckpoint(context.Background(), store.Key{Namespace: "ec", Counter: counter})
				if err != nil {
					continue
				}
				if cp.RollupTime < last[counter] {
					t.Errorf("checkpoint of %s moved back from %d to %d", counter, last[counter], cp.RollupTime)
				}
				last[counter] = cp.RollupTime
			}
		}
	})
}

func verifyExact(t *testing.T, client counterv1connect.CounterServiceClient, want map[string]int64) {
	t.Helper()
	if len(want) == 0 {
		t.Fatal("no add was acknowledged")
	}
	for counter, w := range want {
		res, err := client.GetCount(context.Background(), connect.NewRequest(&counterv1.GetCountRequest{Namespace: "ec", CounterName: counter}))
		if err != nil {
			t.Fatal(err)
		}
		if res.Msg.Count != w {
			t.Errorf("%s = %d, want %d acknowledged", counter, res.Msg.Count, w)
		}
	}
}

func TestClusterConvergesWithEveryHintLost(t *testing.T) {
	h := newHarness(t)
	h.addWorker("")
	h.addWorker("")
	client := h.addGateway()
	// The gateway sends every hint to a closed port, so no hint ever reaches a worker.
	h.gateMs.set([]string{"127.0.0.1:1"})

	l := startLoad(t, []counterv1connect.CounterServiceClient{client}, 200, 8)
	time.Sleep(time.Second)
	want := l.finish()

	waitConverged(t, h.store, want) // no reads through the API until then
	verifyExact(t, client, want)
	if dropped := metricSum(t, h.gateways[0], "counterd_hints_dropped_total"); dropped == 0 {
		t.Error("counterd_hints_dropped_total is 0, but every hint had nowhere to go")
	}
}

// metricSum adds up every series of a metric family of srv.
func metricSum(t *testing.T, srv *server.Server, name string) float64 {
	t.Helper()
	families, err := srv.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

func TestClusterWorkersComeAndGo(t *testing.T) {
	h := newHarness(t)
	for range 3 {
		h.addWorker("")
	}
	clients := []counterv1connect.CounterServiceClient{h.addGateway(), h.addGateway()}
	const counters = 150

	l := startLoad(t, clients, counters, 8)
	stop := make(chan struct{})
	var watchers sync.WaitGroup
	monotonicReader(t, clients[0], counters, stop, &watchers)
	checkpointWatcher(t, h.store, counters, stop, &watchers)

	step := func(name string, f func()) {
		time.Sleep(700 * time.Millisecond)
		f()
		t.Logf("%s: workers %v", name, h.workerMs.Members())
	}
	workers := func() []string { return h.workerMs.Members() }

	step("kill one worker under load", func() { h.stopWorker(workers()[0], true) })
	step("scale to one worker", func() {
		for _, addr := range workers()[1:] {
			h.stopWorker(addr, false)
		}
	})
	step("scale to four workers", func() {
		for range 3 {
			h.addWorker("")
		}
	})
	step("rolling restart of every worker", func() {
		for _, addr := range workers() {
			h.stopWorker(addr, false)
			time.Sleep(200 * time.Millisecond)
			h.addWorker(addr)
		}
	})
	time.Sleep(700 * time.Millisecond)
	want := l.finish()

	waitConverged(t, h.store, want)
	close(stop)
	watchers.Wait()
	verifyExact(t, clients[1], want)
	t.Logf("%d counters, %d failed add attempts retried", len(want), l.errs.Load())
}

func TestWorkerDrainRedirectsHints(t *testing.T) {
	h := newHarness(t)
	first := h.addWorker("")
	h.addWorker("")
	client := h.addGateway()
	l := startLoad(t, []counterv1connect.CounterServiceClient{client}, 100, 4)
	time.Sleep(500 * time.Millisecond)

	// The gateway still lists the draining worker, as a DNS answer would until it refreshes:
	// its hints must be redirected, not lost.
	h.gateMs.set(h.workerMs.Members())
	srv := h.workers[first]
	delete(h.workers, first)
	h.workerMs.set(slices.DeleteFunc(h.workerMs.Members(), func(a string) bool { return a == first }))
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- srv.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("draining worker: %v", err)
		}
		t.Logf("the draining worker exited after %s (shutdown timeout %s)", time.Since(start).Round(time.Millisecond), server.ShutdownTimeout)
	case <-time.After(convergenceDeadline):
		t.Fatalf("a draining worker did not exit within %s", convergenceDeadline)
	}
	time.Sleep(500 * time.Millisecond)
	want := l.finish()

	waitConverged(t, h.store, want)
	verifyExact(t, client, want)
	if redirected := metricSum(t, h.gateways[0], "counterd_hints_redirected_total"); redirected == 0 {
		t.Error("no hint was redirected away from the stopped worker")
	}
	if sent := metricSum(t, h.gateways[0], "counterd_hints_sent_total"); sent == 0 {
		t.Error("counterd_hints_sent_total is 0")
	}
}

func TestRoleRejectsMissingWorkers(t *testing.T) {
	_, err := config.Parse([]byte("cluster:\n  role: gateway\n"))
	if err == nil || !strings.Contains(err.Error(), "cluster.rollupWorkers") {
		t.Fatalf("gateway without workers: %v, want an error naming cluster.rollupWorkers", err)
	}
}
