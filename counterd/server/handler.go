package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"

	"github.com/counterd/counterd/counterd/cache"
	counterv1 "github.com/counterd/counterd/counterd/gen/counter/v1"
	"github.com/counterd/counterd/counterd/gen/counter/v1/counterv1connect"
	"github.com/counterd/counterd/counterd/service"
	"github.com/counterd/counterd/counterd/store"
)

// handler adapts the service to counterv1connect.CounterServiceHandler.
type handler struct {
	svc    *service.Service
	logger *slog.Logger
}

var _ counterv1connect.CounterServiceHandler = (*handler)(nil)

func (h *handler) AddCount(ctx context.Context, req *connect.Request[counterv1.AddCountRequest]) (*connect.Response[counterv1.AddCountResponse], error) {
	m, err := addMutation(req.Msg)
	if err != nil {
		return nil, h.toConnect(err)
	}
	if _, err := h.svc.Mutate(ctx, m, false); err != nil {
		return nil, h.toConnect(err)
	}
	return connect.NewResponse(&counterv1.AddCountResponse{}), nil
}

func (h *handler) AddAndGetCount(ctx context.Context, req *connect.Request[counterv1.AddCountRequest]) (*connect.Response[counterv1.AddAndGetCountResponse], error) {
	m, err := addMutation(req.Msg)
	if err != nil {
		return nil, h.toConnect(err)
	}
	res, err := h.svc.Mutate(ctx, m, true)
	if err != nil {
		return nil, h.toConnect(err)
	}
	return connect.NewResponse(&counterv1.AddAndGetCountResponse{Count: res.Count}), nil
}

func (h *handler) GetCount(ctx context.Context, req *connect.Request[counterv1.GetCountRequest]) (*connect.Response[counterv1.GetCountResponse], error) {
	count, err := h.svc.Get(ctx, req.Msg.GetNamespace(), req.Msg.GetCounterName())
	if err != nil {
		return nil, h.toConnect(err)
	}
	return connect.NewResponse(&counterv1.GetCountResponse{Count: count}), nil
}

func (h *handler) ClearCount(ctx context.Context, req *connect.Request[counterv1.ClearCountRequest]) (*connect.Response[counterv1.ClearCountResponse], error) {
	m := service.Mutation{Namespace: req.Msg.GetNamespace(), Counter: req.Msg.GetCounterName(), Clear: true}
	if err := setToken(&m, req.Msg.GetIdempotencyToken()); err != nil {
		return nil, h.toConnect(err)
	}
	if _, err := h.svc.Mutate(ctx, m, false); err != nil {
		return nil, h.toConnect(err)
	}
	return connect.NewResponse(&counterv1.ClearCountResponse{}), nil
}

// MaxBatchItems is the most items an AddCounts or GetCounts request may carry.
const MaxBatchItems = 1000

func (h *handler) AddCounts(ctx context.Context, req *connect.Request[counterv1.AddCountsRequest]) (*connect.Response[counterv1.AddCountsResponse], error) {
	adds := req.Msg.GetAdds()
	if err := checkBatchSize("adds", len(adds)); err != nil {
		return nil, err
	}
	slab := make([]counterv1.AddCountResult, len(adds))
	results := make([]*counterv1.AddCountResult, len(adds))
	mutations := make([]service.Mutation, 0, len(adds))
	indexes := make([]int, 0, len(adds))
	for i, add := range adds {
		results[i] = &slab[i]
		m, err := addMutation(add)
		if err != nil {
			slab[i].Error = h.itemError(err)
			continue
		}
		mutations = append(mutations, m)
		indexes = append(indexes, i)
	}
	for j, r := range h.svc.MutateBatch(ctx, mutations) {
		slab[indexes[j]].Error = h.itemError(r.Err)
	}
	return connect.NewResponse(&counterv1.AddCountsResponse{Results: results}), nil
}

func (h *handler) GetCounts(ctx context.Context, req *connect.Request[counterv1.GetCountsRequest]) (*connect.Response[counterv1.GetCountsResponse], error) {
	gets := req.Msg.GetGets()
	if err := checkBatchSize("gets", len(gets)); err != nil {
		return nil, err
	}
	// One slice holds every result, instead of an allocation per item.
	slab := make([]counterv1.GetCountResult, len(gets))
	results := make([]*counterv1.GetCountResult, len(gets))
	for i, get := range gets {
		count, err := h.svc.Get(ctx, get.GetNamespace(), get.GetCounterName())
		slab[i].Count, slab[i].Error = count, h.itemError(err)
		results[i] = &slab[i]
	}
	return connect.NewResponse(&counterv1.GetCountsResponse{Results: results}), nil
}

func checkBatchSize(field string, n int) error {
	if n > MaxBatchItems {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("%s: %d items, more than the maximum of %d per request; split them over several requests", field, n, MaxBatchItems))
	}
	return nil
}

// itemError returns the status of one item of a batch: the status the single-item request
// would have returned, or nil.
func (h *handler) itemError(err error) *counterv1.ItemError {
	if err == nil {
		return nil
	}
	var cerr *connect.Error
	if !errors.As(h.toConnect(err), &cerr) {
		return &counterv1.ItemError{Code: int32(connect.CodeInternal), Message: err.Error()}
	}
	return &counterv1.ItemError{Code: int32(cerr.Code()), Message: cerr.Message()}
}

func addMutation(msg *counterv1.AddCountRequest) (service.Mutation, error) {
	m := service.Mutation{Namespace: msg.GetNamespace(), Counter: msg.GetCounterName(), Delta: msg.GetDelta()}
	return m, setToken(&m, msg.GetIdempotencyToken())
}

func setToken(m *service.Mutation, tok *counterv1.IdempotencyToken) error {
	if tok == nil {
		return nil
	}
	if tok.GetToken() == "" {
		return &service.Error{Code: service.CodeInvalidArgument, Message: "idempotency_token.token: must not be empty when idempotency_token is set; send a unique string such as a UUID, or omit idempotency_token"}
	}
	m.Token = tok.GetToken()
	if ts := tok.GetGenerationTime(); ts != nil {
		if err := ts.CheckValid(); err != nil {
			return &service.Error{Code: service.CodeInvalidArgument, Message: fmt.Sprintf("idempotency_token.generation_time: %v; send a timestamp between years 1 and 9999", err)}
		}
		m.GenerationTime = ts.AsTime()
		if m.GenerationTime.IsZero() {
			// The zero time.Time means "unset" to the service; one nanosecond later keeps the
			// client's intent (a time far outside any accept window).
			m.GenerationTime = m.GenerationTime.Add(time.Nanosecond)
		}
	}
	return nil
}

// toConnect maps every error the API returns to its status code. It is the one place that
// decides which failures a client may retry.
func (h *handler) toConnect(err error) error {
	if code, ok := service.CodeOf(err); ok {
		switch code {
		case service.CodeInvalidArgument:
			return connect.NewError(connect.CodeInvalidArgument, err)
		case service.CodeFailedPrecondition:
			return connect.NewError(connect.CodeFailedPrecondition, err)
		case service.CodeAlreadyExists:
			return connect.NewError(connect.CodeAlreadyExists, err)
		case service.CodeNotFound:
			return connect.NewError(connect.CodeNotFound, err)
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return connect.NewError(connect.CodeCanceled, err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, store.ErrTimeout):
		return connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("%w; the mutation may or may not be applied: retry with the same idempotency token", err))
	case errors.Is(err, store.ErrClosed):
		return connect.NewError(connect.CodeUnavailable, errors.New("the server is shutting down; retry with the same idempotency token"))
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, cache.ErrUnavailable):
		return connect.NewError(connect.CodeUnavailable, fmt.Errorf("%w; retry with the same idempotency token", err))
	}
	h.logger.Error("Request failed", "err", err)
	return connect.NewError(connect.CodeInternal, err)
}
