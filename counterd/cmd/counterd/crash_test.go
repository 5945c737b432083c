package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	counterv1 "github.com/counterd/counterd/counterd/gen/counter/v1"
	"github.com/counterd/counterd/counterd/gen/counter/v1/counterv1connect"
)

// childEnv makes the test binary run counterd itself, so the crash test needs no separate
// build step.
const childEnv = "COUNTERD_TEST_RUN_AS_COUNTERD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(run(os.Args[1:]))
	}
	os.Exit(m.Run())
}

const crashConfig = `
namespaces:
  - name: accurate
    type: Accurate
  - name: ec
    acceptLimit: 300ms
    maxClockSkew: 100ms
    rollup:
      skewMargin: 100ms
      coalesce: 50ms
`

// process is a counterd child process on a fixed loopback port.
type process struct {
	t       *testing.T
	addr    string
	dataDir string
	config  string
	log     *os.File
	cmd     *exec.Cmd
	// extra are further flags of counterd serve.
	extra []string
}

func (p *process) start() {
	p.t.Helper()
	args := append([]string{"serve", "--listen", p.addr, "--data-dir", p.dataDir, "--config", p.config}, p.extra...)
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stdout, cmd.Stderr = p.log, p.log
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("failed to start counterd: %v", err)
	}
	p.cmd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("counterd did not become ready on %s; see %s", p.addr, p.log.Name())
}

func (p *process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	_ = p.cmd.Wait()
}

func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		p.kill()
		p.t.Errorf("counterd did not stop within 30s of SIGTERM")
	}
}

func freeLoopbackAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// tally is what the clients know: the sum of acknowledged adds per counter.
type tally struct {
	mu       sync.Mutex
	acked    map[string]int64
	rejected int
	attempts int
}

// TestCrashUnderLoad kills counterd with SIGKILL repeatedly while clients add with retries
// under fixed tokens, then checks every counter against the adds that were acknowledged.
func TestCrashUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "counterd.yaml")
	if err := os.WriteFile(cfgPath, []byte(crashConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	logFile, err := os.Create(filepath.Join(dir, "counterd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	p := &process{t: t, addr: freeLoopbackAddr(t), dataDir: filepath.Join(dir, "data"), config: cfgPath, log: logFile}
	p.start()
	defer func() {
		if p.cmd.ProcessState == nil {
			p.stop()
		}
	}()

	client := counterv1connect.NewCounterServiceClient(h2cHTTPClient(), "http://"+p.addr, connect.WithGRPC())
	results := &tally{acked: map[string]int64{}}
	stop := make(chan struct{})
	var clients sync.WaitGroup
	for w := range 8 {
		clients.Go(func() { addUntilStopped(t, client, w, stop, results) })
	}

	rng := rand.New(rand.NewPCG(7, 7))
	const kills = 5
	for range kills {
		time.Sleep(time.Duration(500+rng.IntN(1000)) * time.Millisecond)
		p.kill()
		p.start()
	}
	time.Sleep(500 * time.Millisecond)
	close(stop)
	clients.Wait()
	// One more crash with no writes after it: only the written-counter index can bring the
	// last counters of the EventuallyConsistent namespace to their values now.
	p.kill()
	p.start()

	// Wait for the EventuallyConsistent namespace to converge, then compare every counter.
	results.mu.Lock()
	defer results.mu.Unlock()
	if len(results.acked) == 0 {
		t.Fatal("no add was acknowledged")
	}
	mismatches := waitExact(t, client, results.acked)
	t.Logf("%d kills plus one after the load, %d add attempts, %d counters, %d adds rejected as too late after a crash, %d mismatches",
		kills, results.attempts, len(results.acked), results.rejected, mismatches)
}

// convergenceDeadline bounds the wait for counters to converge after the load. It is far
// above the expected few seconds, so a slow machine does not fail the test.
const convergenceDeadline = 60 * time.Second

// waitExact reads every counter of acked ("namespace/counter" names) until all equal their
// acknowledged sums or convergenceDeadline passes, logs how long that took, and reports each
// counter still wrong. It returns the number of mismatches.
func waitExact(t *testing.T, client counterv1connect.CounterServiceClient, acked map[string]int64) int {
	t.Helper()
	start := time.Now()
	for {
		wrong := map[string]int64{}
		for name, want := range acked {
			ns, counter := splitName(name)
			res, err := client.GetCount(context.Background(), connect.NewRequest(&counterv1.GetCountRequest{Namespace: ns, CounterName: counter}))
			if err != nil {
				t.Fatalf("GetCount %s: %v", name, err)
			}
			if res.Msg.Count != want {
				wrong[name] = res.Msg.Count
			}
		}
		if len(wrong) == 0 {
			t.Logf("all %d counters exact %s after the load stopped", len(acked), time.Since(start).Round(10*time.Millisecond))
			return 0
		}
		if time.Since(start) > convergenceDeadline {
			for name, got := range wrong {
				t.Errorf("%s = %d, want %d acknowledged", name, got, acked[name])
			}
			return len(wrong)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func splitName(name string) (string, string) {
	for i := range name {
		if name[i] == '/' {
			return name[:i], name[i+1:]
		}
	}
	return name, ""
}

// addUntilStopped sends adds, each retried with its token and generation time until the server
// acknowledges it or rejects it for good. A FAILED_PRECONDITION after a crash means the event
// time passed the accept limit and the token was never recorded: the add was not applied.
func addUntilStopped(t *testing.T, client counterv1connect.CounterServiceClient, worker int, stop chan struct{}, results *tally) {
	rng := rand.New(rand.NewPCG(uint64(worker), 99))
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		default:
		}
		ns := "accurate"
		if i%2 == 1 {
			ns = "ec"
		}
		counter := fmt.Sprintf("c%d", rng.IntN(20))
		delta := rng.Int64N(100) - 30
		req := &counterv1.AddCountRequest{
			Namespace: ns, CounterName: counter, Delta: delta,
			IdempotencyToken: &counterv1.IdempotencyToken{Token: fmt.Sprintf("w%d-%d", worker, i), GenerationTime: timestamppb.Now()},
		}
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := client.AddCount(ctx, connect.NewRequest(req))
			cancel()
			results.mu.Lock()
			results.attempts++
			results.mu.Unlock()
			if err == nil {
				results.mu.Lock()
				results.acked[ns+"/"+counter] += delta
				results.mu.Unlock()
				break
			}
			code := connect.CodeOf(err)
			if code == connect.CodeFailedPrecondition {
				results.mu.Lock()
				results.rejected++
				results.mu.Unlock()
				break
			}
			if code == connect.CodeInvalidArgument || code == connect.CodeAlreadyExists || code == connect.CodeNotFound {
				t.Errorf("add %s/%s: %v", ns, counter, err)
				return
			}
			if attempt > 2000 {
				t.Errorf("add %s/%s still failing after %d attempts: %v", ns, counter, attempt, err)
				return
			}
			time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
		}
	}
}

func h2cHTTPClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}
