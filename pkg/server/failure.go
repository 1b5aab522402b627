package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// storeFailed handles a failed Store.Take. When the caller gave up it
// returns the context's error. A request error (limiter.IsRequestError: a
// bug, as requests are validated first) is INTERNAL. Any other error means
// the store could not decide, and the domain's failure mode answers (see
// failureAnswer): UNAVAILABLE, or results filled in by fillFailure, after
// which the caller builds the response as usual, so fail-closed answers
// carry headers and a body too.
func (s *Server) storeFailed(ctx context.Context, api apiID, snap *Snapshot, domain string, err error, sc *scratch) (codeID, error) {
	if cerr := ctx.Err(); cerr != nil {
		s.metrics.storeFailure(api, failureCanceled)
		s.traceStoreFailure(ctx, failureCanceled)
		st := status.FromContextError(cerr)
		if st.Code() == codes.DeadlineExceeded {
			return codeDeadlineExceeded, st.Err()
		}
		return codeCanceled, st.Err()
	}
	if limiter.IsRequestError(err) {
		s.metrics.storeFailure(api, failureInternal)
		s.traceStoreFailure(ctx, failureInternal)
		s.log.Error("rate limit store rejected a request", "err", err)
		return codeInternal, status.Error(codes.Internal, "rate limit store rejected the request")
	}
	mode := snap.settings.Failure.For(domain)
	s.warn.Warn(ctx, s.log, "store", "rate limit store failed", "err", err, "failure_mode", mode.String())
	a := failureAnswer(mode)
	s.metrics.storeFailure(api, a)
	s.traceStoreFailure(ctx, a)
	if a == failureUnavailable {
		return codeUnavailable, status.Error(codes.Unavailable, "rate limit store unavailable")
	}
	var re *RouteError
	if errors.As(err, &re) {
		// Only the chains that failed: the others' results stand.
		for _, r := range re.ranges {
			fillFailure(a, sc.reqs[r[0]:r[1]], sc.res[r[0]:r[1]], snap.settings.FailClosedRetryAfter)
		}
	} else {
		fillFailure(a, sc.reqs, sc.res, snap.settings.FailClosedRetryAfter)
	}
	sc.copyResults()
	return codeOK, nil
}

// failureAnswer returns the answer failure mode m prescribes for a call no
// backend could decide: failureOpen (admit, overall code OK) for
// chain.FailOpen, failureClosed (refuse, OVER_LIMIT) for chain.FailClosed,
// and failureUnavailable (gRPC codes.Unavailable, never UNKNOWN, which Envoy
// lets through whatever its failure mode) for chain.FailEnvoy.
func failureAnswer(m chain.FailureMode) failureID {
	switch m {
	case chain.FailOpen:
		return failureOpen
	case chain.FailClosed:
		return failureClosed
	}
	return failureUnavailable
}

// fillFailure writes into res the results reported with answer a for reqs,
// so the server can build statuses and headers as usual: failureOpen admits
// every request with its whole capacity remaining; failureClosed refuses
// every request with nothing remaining and retryAfter as RetryAfter and
// ResetAfter (e.g. the breaker's open_for). Other answers write nothing.
func fillFailure(a failureID, reqs []limiter.Request, res []limiter.Result, retryAfter time.Duration) {
	for i := range min(len(reqs), len(res)) {
		c := reqs[i].Limit.Capacity()
		switch a {
		case failureOpen:
			res[i] = limiter.Result{Allowed: true, Limit: c, Remaining: c}
		case failureClosed:
			res[i] = limiter.Result{Limit: c, ResetAfter: retryAfter, RetryAfter: retryAfter}
		}
	}
}
