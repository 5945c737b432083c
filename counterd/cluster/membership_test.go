package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRankStartsWithOwner(t *testing.T) {
	members := []string{"a:1", "b:1", "c:1", "d:1"}
	for i := range 200 {
		key := fmt.Sprint("k", i)
		ranked := Rank(key, members)
		if len(ranked) != len(members) || ranked[0] != Owner(key, members) {
			t.Fatalf("Rank(%s) = %v, Owner = %s", key, ranked, Owner(key, members))
		}
		sorted := slices.Clone(ranked)
		slices.Sort(sorted)
		if !slices.Equal(sorted, members) {
			t.Fatalf("Rank(%s) = %v is not a permutation of %v", key, ranked, members)
		}
	}
	if Owner("k", nil) != "" {
		t.Fatal("Owner with no members is not empty")
	}
}

func TestRemovingMemberMovesOnlyItsKeys(t *testing.T) {
	before := []string{"w0:8080", "w1:8080", "w2:8080", "w3:8080"}
	after := []string{"w0:8080", "w1:8080", "w3:8080"} // w2 left
	moved, owned := 0, 0
	for i := range 5000 {
		key := CounterKey("ns", fmt.Sprint("c", i))
		was, is := Owner(key, before), Owner(key, after)
		if was == "w2:8080" {
			owned++
			// The key goes to its second choice before the change.
			if want := Rank(key, before)[1]; is != want {
				t.Fatalf("key %s of the removed member went to %s, want its next owner %s", key, is, want)
			}
			continue
		}
		if was != is {
			moved++
		}
	}
	if moved != 0 {
		t.Fatalf("%d keys of remaining members changed owner", moved)
	}
	if owned < 5000/4/2 {
		t.Fatalf("the removed member owned only %d of 5000 keys: the spread is uneven", owned)
	}
}

func TestAddingMemberTakesOnlyItsShare(t *testing.T) {
	before := []string{"w0:8080", "w1:8080", "w2:8080"}
	after := append(slices.Clone(before), "w3:8080")
	for i := range 5000 {
		key := ShardKey("ns", i)
		was, is := Owner(key, before), Owner(key, after)
		if was != is && is != "w3:8080" {
			t.Fatalf("key %s moved from %s to %s, not to the new member", key, was, is)
		}
	}
}

func TestDNSMembership(t *testing.T) {
	var mu sync.Mutex
	answer := []string{"127.0.0.12", "127.0.0.11"}
	var fail error
	resolve := func(_ context.Context, host string) ([]string, error) {
		mu.Lock()
		defer mu.Unlock()
		if host != "workers.ns.svc" {
			t.Errorf("resolved %q", host)
		}
		return slices.Clone(answer), fail
	}
	d := NewDNS(context.Background(), "workers.ns.svc", 8080, 10*time.Millisecond, resolve, nil)
	defer d.Stop()
	if got := d.Members(); !slices.Equal(got, []string{"127.0.0.11:8080", "127.0.0.12:8080"}) {
		t.Fatalf("members = %v", got)
	}

	mu.Lock()
	answer = []string{"127.0.0.13"}
	mu.Unlock()
	waitFor(t, func() bool { return slices.Equal(d.Members(), []string{"127.0.0.13:8080"}) })

	mu.Lock()
	fail = errors.New("no such host")
	mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	if got := d.Members(); !slices.Equal(got, []string{"127.0.0.13:8080"}) {
		t.Fatalf("a failed lookup changed the members to %v; it must keep the last known ones", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLiveSkipsWorkersThatAreNotReady(t *testing.T) {
	ready := newReadyServer(t, http.StatusOK)
	notReady := newReadyServer(t, http.StatusServiceUnavailable)
	closed := "127.0.0.1:1"
	members := Static{ready, notReady, closed, "127.0.0.1:2"}

	l := NewLive(members, "127.0.0.1:2", http.DefaultClient, 10*time.Millisecond, nil)
	defer l.Stop()
	if got := l.Members(); !slices.Equal(got, []string{ready, "127.0.0.1:2"}) {
		t.Fatalf("live members = %v, want the ready one and self", got)
	}

	// With no member known to be live, all are returned.
	none := NewLive(Static{closed}, "", http.DefaultClient, 10*time.Millisecond, nil)
	defer none.Stop()
	if got := none.Members(); !slices.Equal(got, []string{closed}) {
		t.Fatalf("members with none live = %v, want all", got)
	}
}

func newReadyServer(t *testing.T, status int) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			t.Errorf("probed %s, want /readyz", r.URL.Path)
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}
