package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/counterd/counterd/counterd/backends"
	"github.com/counterd/counterd/counterd/config"
	counterv1 "github.com/counterd/counterd/counterd/gen/counter/v1"
	"github.com/counterd/counterd/counterd/gen/counter/v1/counterv1connect"
	"github.com/counterd/counterd/counterd/schema"
)

// cassandraCluster runs gateways and rollup workers as separate counterd processes over a
// real Cassandra and a real memcached.
type cassandraCluster struct {
	t        *testing.T
	dir      string
	config   string
	slots    []string // every worker address a worker may use
	workers  map[string]*process
	gateways []*process
}

// newCassandraCluster skips the test unless COUNTERD_TEST_CASSANDRA names a Cassandra, then
// creates a fresh keyspace and starts memcached.
func newCassandraCluster(t *testing.T, slots int) *cassandraCluster {
	t.Helper()
	addr := os.Getenv("COUNTERD_TEST_CASSANDRA")
	if addr == "" {
		t.Skip("COUNTERD_TEST_CASSANDRA is not set; set it to the host:port of a test Cassandra (for example a cassandra:5 container on 127.0.0.1:9042) to run the multi-process cluster tests")
	}
	if _, err := exec.LookPath("memcached"); err != nil {
		t.Fatal("memcached is not on the PATH; install it (apt-get install memcached) to run the cluster tests")
	}
	dir := t.TempDir()
	keyspace := fmt.Sprintf("cluster_test_%d", time.Now().UnixNano())
	memcachedAddr := startMemcached(t)

	cfgText := fmt.Sprintf(`
store:
  type: cassandra
  cassandra:
    hosts: [%q]
cache:
  type: memcached
  memcached:
    servers: [%q]
namespaces:
  - name: ec
    keyspace: %s
    acceptLimit: 1s
    maxClockSkew: 500ms
    rollup:
      skewMargin: 1s
      coalesce: 100ms
`, addr, memcachedAddr, keyspace)
	cfgPath := filepath.Join(dir, "counterd.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := backends.ApplySchema(context.Background(), cfg); err != nil {
		t.Fatalf("failed to create the test keyspace %s: %v", keyspace, err)
	}
	t.Cleanup(func() {
		session, err := schema.Connect(cfg.Store.Cassandra, "", "")
		if err == nil {
			_ = schema.DropKeyspace(context.Background(), session, keyspace)
			session.Close()
		}
	})

	c := &cassandraCluster{t: t, dir: dir, config: cfgPath, workers: map[string]*process{}}
	for range slots {
		c.slots = append(c.slots, freeLoopbackAddr(t))
	}
	t.Cleanup(c.stopAll)
	return c
}

func startMemcached(t *testing.T) string {
	t.Helper()
	addr := freeLoopbackAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	args := []string{"-l", "127.0.0.1", "-p", port, "-U", "0", "-m", "64"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	cmd := exec.Command("memcached", args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("failed to start memcached: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if conn, err := net.Dial("tcp", addr); err == nil {
			conn.Close()
			return addr
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("memcached did not listen on %s", addr)
	return ""
}

func (c *cassandraCluster) logFile(name string) *os.File {
	f, err := os.Create(filepath.Join(c.dir, name+".log"))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { f.Close() })
	return f
}

func (c *cassandraCluster) startWorker(slot string) {
	c.t.Helper()
	p := &process{
		t: c.t, addr: slot, dataDir: filepath.Join(c.dir, "data-"+slot), config: c.config,
		log:   c.logFile("worker-" + strings.ReplaceAll(slot, ":", "-")),
		extra: []string{"--role", "rollup", "--advertise", slot, "--rollup-workers", strings.Join(c.slots, ",")},
	}
	p.start()
	c.workers[slot] = p
}

// startGateway starts a gateway that sends hints to workers, or to the slots when workers is
// empty.
func (c *cassandraCluster) startGateway(workers []string) counterv1connect.CounterServiceClient {
	c.t.Helper()
	if len(workers) == 0 {
		workers = c.slots
	}
	addr := freeLoopbackAddr(c.t)
	p := &process{
		t: c.t, addr: addr, dataDir: filepath.Join(c.dir, "data-gw-"+strconv.Itoa(len(c.gateways))), config: c.config,
		log:   c.logFile("gateway-" + strconv.Itoa(len(c.gateways))),
		extra: []string{"--role", "gateway", "--rollup-workers", strings.Join(workers, ",")},
	}
	p.start()
	c.gateways = append(c.gateways, p)
	return counterv1connect.NewCounterServiceClient(h2cHTTPClient(), "http://"+addr, connect.WithGRPC())
}

func (c *cassandraCluster) stopWorker(slot string, kill bool) {
	p := c.workers[slot]
	delete(c.workers, slot)
	if kill {
		p.kill()
	} else {
		p.stop()
	}
}

func (c *cassandraCluster) stopAll() {
	for slot := range c.workers {
		c.stopWorker(slot, false)
	}
	for _, g := range c.gateways {
		if g.cmd.ProcessState == nil {
			g.stop()
		}
	}
}

// clusterLoad adds through the gateways until stopped and records the acknowledged adds.
func clusterLoad(t *testing.T, clients []counterv1connect.CounterServiceClient, counters int, stop chan struct{}) (*sync.WaitGroup, *tally) {
	results := &tally{acked: map[string]int64{}}
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			client := clients[w%len(clients)]
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				counter := fmt.Sprint("c", rng.IntN(counters))
				delta := rng.Int64N(9) + 1
				req := &counterv1.AddCountRequest{Namespace: "ec", CounterName: counter, Delta: delta,
					IdempotencyToken: &counterv1.IdempotencyToken{Token: fmt.Sprintf("w%d-%d", w, i), GenerationTime: timestamppb.Now()}}
				for attempt := 0; attempt < 200; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					_, err := client.AddCount(ctx, connect.NewRequest(req))
					cancel()
					if err == nil {
						results.mu.Lock()
						results.acked[counter] += delta
						results.mu.Unlock()
						break
					}
					if connect.CodeOf(err) == connect.CodeFailedPrecondition {
						break // too late: never applied
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	return &wg, results
}

func verifyCluster(t *testing.T, client counterv1connect.CounterServiceClient, acked map[string]int64) {
	t.Helper()
	if len(acked) == 0 {
		t.Fatal("no add was acknowledged")
	}
	named := make(map[string]int64, len(acked))
	for counter, want := range acked {
		named["ec/"+counter] = want
	}
	waitExact(t, client, named)
}

func TestCassandraClusterWorkersComeAndGo(t *testing.T) {
	c := newCassandraCluster(t, 4)
	for _, slot := range c.slots[:3] {
		c.startWorker(slot)
	}
	clients := []counterv1connect.CounterServiceClient{c.startGateway(nil), c.startGateway(nil)}

	stop := make(chan struct{})
	wg, results := clusterLoad(t, clients, 100, stop)
	pause := func() { time.Sleep(2 * time.Second) }

	pause()
	c.stopWorker(c.slots[0], true) // killed under load
	pause()
	c.stopWorker(c.slots[1], false) // scaled down to one worker
	pause()
	for _, slot := range []string{c.slots[0], c.slots[1], c.slots[3]} {
		c.startWorker(slot) // scaled up to four
	}
	pause()
	for _, slot := range c.slots { // rolling restart
		c.stopWorker(slot, false)
		c.startWorker(slot)
	}
	pause()
	close(stop)
	wg.Wait()

	verifyCluster(t, clients[0], results.acked)
}

func TestCassandraClusterConvergesWithEveryHintLost(t *testing.T) {
	c := newCassandraCluster(t, 2)
	for _, slot := range c.slots {
		c.startWorker(slot)
	}
	// The gateway's only worker address is a closed port, so every hint is lost.
	client := c.startGateway([]string{freeLoopbackAddr(t)})

	stop := make(chan struct{})
	wg, results := clusterLoad(t, []counterv1connect.CounterServiceClient{client}, 100, stop)
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()

	verifyCluster(t, client, results.acked)
}
