package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	counterv1 "github.com/counterd/counterd/counterd/gen/counter/v1"
	"github.com/counterd/counterd/counterd/server"
)

func addItem(counter string, delta int64, token string) *counterv1.AddCountRequest {
	return addReq("default", counter, delta, token).Msg
}

func TestAddCountsAppliesEachItemOnce(t *testing.T) {
	srv := startServer(t, "", t.TempDir())
	defer srv.Close()
	client := grpcClient(srv)
	ctx := context.Background()

	late := addItem("late", 1, "late-1")
	late.IdempotencyToken.GenerationTime = timestamppb.New(time.Now().Add(-time.Hour))
	adds := []*counterv1.AddCountRequest{
		addItem("a", 5, "a-1"),
		addItem("a", 5, "a-1"), // a copy in the same batch counts once
		addItem("a", 7, "a-1"), // the same token with another delta is rejected
		addItem("b", -3, "b-1"),
		{Namespace: "Bad", CounterName: "c", Delta: 1},
		{Namespace: "default", CounterName: "", Delta: 1},
		late,
		addItem("a", 2, "a-2"),
	}
	res, err := client.AddCounts(ctx, connect.NewRequest(&counterv1.AddCountsRequest{Adds: adds}))
	if err != nil {
		t.Fatalf("AddCounts: %v", err)
	}
	want := []struct {
		code  connect.Code // 0 for success
		field string
	}{
		{}, {}, {connect.CodeAlreadyExists, "idempotency_token.token:"}, {},
		{connect.CodeInvalidArgument, "namespace:"}, {connect.CodeInvalidArgument, "counter_name:"},
		{connect.CodeFailedPrecondition, "idempotency_token.generation_time:"}, {},
	}
	if len(res.Msg.Results) != len(want) {
		t.Fatalf("AddCounts returned %d results for %d adds", len(res.Msg.Results), len(adds))
	}
	for i, r := range res.Msg.Results {
		e := r.GetError()
		switch {
		case want[i].code == 0 && e != nil:
			t.Errorf("add %d failed: %v", i, e)
		case want[i].code != 0 && (e == nil || connect.Code(e.Code) != want[i].code || !strings.HasPrefix(e.Message, want[i].field)):
			t.Errorf("add %d: error %v, want code %v with a message naming %s", i, e, want[i].code, want[i].field)
		}
	}

	// Sending the whole batch again changes nothing.
	if _, err := client.AddCounts(ctx, connect.NewRequest(&counterv1.AddCountsRequest{Adds: adds})); err != nil {
		t.Fatalf("AddCounts again: %v", err)
	}
	// GetCounts reads checkpoints, which follow the rollups; AddAndGetCount reads the exact
	// value at once.
	for _, tc := range []struct {
		counter string
		want    int64
	}{{"a", 7}, {"b", -3}, {"late", 0}} {
		r, err := client.AddAndGetCount(ctx, addReq("default", tc.counter, 0, "read-"+tc.counter))
		if err != nil {
			t.Fatal(err)
		}
		if r.Msg.Count != tc.want {
			t.Errorf("%s = %d, want %d", tc.counter, r.Msg.Count, tc.want)
		}
	}
	var results []*counterv1.GetCountResult
	ok := eventually(t, func() bool {
		gets, err := client.GetCounts(ctx, connect.NewRequest(&counterv1.GetCountsRequest{Gets: []*counterv1.GetCountRequest{
			{Namespace: "default", CounterName: "a"},
			{Namespace: "default", CounterName: "b"},
			{Namespace: "missing", CounterName: "a"},
			{Namespace: "default", CounterName: "never-written"},
		}}))
		if err != nil {
			t.Fatal(err)
		}
		results = gets.Msg.Results
		return results[0].Count == 7 && results[1].Count == -3
	})
	if !ok {
		t.Fatalf("GetCounts never returned a=7 and b=-3: %v", results)
	}
	if e := results[2].GetError(); e == nil || connect.Code(e.Code) != connect.CodeNotFound {
		t.Errorf("get of an unknown namespace: %v, want NOT_FOUND", e)
	}
	if results[3].GetError() != nil || results[3].Count != 0 {
		t.Errorf("get of a counter never written = %v, want 0", results[3])
	}
}

func TestBatchSizeLimit(t *testing.T) {
	srv := startServer(t, "", t.TempDir())
	defer srv.Close()
	adds := make([]*counterv1.AddCountRequest, server.MaxBatchItems+1)
	for i := range adds {
		adds[i] = addItem("x", 1, "")
	}
	_, err := grpcClient(srv).AddCounts(context.Background(), connect.NewRequest(&counterv1.AddCountsRequest{Adds: adds}))
	if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "adds: 1001 items") {
		t.Fatalf("AddCounts of %d adds: %v, want INVALID_ARGUMENT naming adds", len(adds), err)
	}
	// Nothing of the rejected batch was applied.
	if n := getCount(t, grpcClient(srv), "default", "x"); n != 0 {
		t.Fatalf("x = %d after a rejected batch, want 0", n)
	}
}

func TestBatchOverJSON(t *testing.T) {
	srv := startServer(t, "", t.TempDir())
	defer srv.Close()
	body := `{"adds":[{"namespace":"default","counterName":"j","delta":2,"idempotencyToken":{"token":"j-1"}},{"namespace":"default","counterName":"j","delta":3,"idempotencyToken":{"token":"j-1"}}]}`
	resp, err := http.Post("http://"+srv.Addr()+"/counter.v1.CounterService/AddCounts", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Results []struct {
			Error *struct {
				Code    int
				Message string
			}
		}
	}
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("JSON AddCounts = %d, %v", resp.StatusCode, err)
	}
	if len(got.Results) != 2 || got.Results[0].Error != nil || got.Results[1].Error == nil ||
		got.Results[1].Error.Code != 6 || !strings.HasPrefix(got.Results[1].Error.Message, "idempotency_token.token:") {
		t.Fatalf("JSON AddCounts = %+v, want the first add applied and the second rejected with code 6 (ALREADY_EXISTS)", got)
	}
}
