package server

import (
	"context"
	"log/slog"
	"sync/atomic"

	"connectrpc.com/connect"

	"github.com/counterd/counterd/counterd/cluster"
	clusterv1 "github.com/counterd/counterd/counterd/gen/counterd/cluster/v1"
	"github.com/counterd/counterd/counterd/service"
)

// hintHandler takes rollup hints from gateways on a rollup worker.
type hintHandler struct {
	svc      *service.Service
	draining *atomic.Bool
	logger   *slog.Logger
}

func (h *hintHandler) Hint(_ context.Context, req *connect.Request[clusterv1.HintRequest]) (*connect.Response[clusterv1.HintResponse], error) {
	if h.draining.Load() {
		return nil, connect.NewError(connect.CodeUnavailable, cluster.ErrDraining)
	}
	res := &clusterv1.HintResponse{}
	invalid := 0
	for i, hint := range req.Msg.GetHints() {
		queued, err := h.svc.HintLocal(hint.GetNamespace(), hint.GetCounterName(), hint.GetDueUnixNanos())
		if err != nil {
			invalid++ // not retried elsewhere: no worker would accept it
			continue
		}
		if !queued {
			res.Rejected = append(res.Rejected, uint32(i))
		}
	}
	if invalid > 0 {
		h.logger.Warn("Ignored invalid rollup hints", "hints", invalid)
	}
	return connect.NewResponse(res), nil
}
