package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// Result is the answer of Decide for one request.
type Result struct {
	// Allowed is false when the request is refused: a descriptor is over
	// its limit (not a shadow rule; a quota rule only when every quota
	// descriptor is over), or the failure mode refused it; never under the
	// server-wide shadow_mode.
	Allowed bool
	// Failed is true when the store could not decide and the domain's
	// failure mode (Settings.Failure, open or closed) answered: the
	// statuses then hold the whole capacity (open) or nothing remaining
	// and Settings.FailClosedRetryAfter (closed).
	Failed bool
	// RetryAfter is how long a refused client should wait: the longest
	// RetryAfter of the refusing descriptors (the RateLimitService's
	// Retry-After header is this, rounded up to whole seconds); zero when
	// allowed.
	RetryAfter time.Duration
	// Statuses has one status per descriptor, in request order. Decide
	// reuses its array.
	Statuses []Status
}

// Status is the decision for one descriptor.
type Status struct {
	// Counted is true when a limit applies; false when no rule matches
	// (or the domain is unknown), or the rule is unlimited or replaced by
	// another descriptor's rule. The fields below are set only when
	// Counted.
	Counted bool
	// Allowed is false when the descriptor is over its limit (never for
	// a shadow rule), even when the request is not refused (Quota, or the
	// server-wide shadow_mode).
	Allowed bool
	// Quota is true for a quota-mode rule (see Result.Allowed).
	Quota bool
	// Shadow is true for a shadow-mode rule: counted, never refusing.
	Shadow bool
	// Rule is the rule's name, else its path.
	Rule string
	// Limit is the effective limit: the rule's, its tier's, or an
	// override's (Period includes the unit multiplier).
	Limit limiter.Limit
	// Remaining is how many more requests the limit admits now (>= 0).
	Remaining int64
	// Reset is the time until the counter is back to full capacity.
	Reset time.Duration
	// RetryAfter is, when the limit refused, the time until a request
	// could be admitted; zero otherwise.
	RetryAfter time.Duration
}

// Decide counts one request of domain carrying descriptors (one hit
// each) and writes the decision into r: the RateLimitService's decision
// (the same matching, counting, failure mode and metrics, recorded as
// ratelimit requests) without its protocol. Decide does not keep
// descriptors after it returns.
//
// Errors are gRPC status errors, as ShouldRateLimit's: InvalidArgument for
// an empty domain, no descriptors, a descriptor without entries, an entry
// without key, or beyond Settings.Bounds; Unavailable when the store
// failed under failure mode envoy; Canceled or DeadlineExceeded when ctx
// is done. r is then unspecified.
func (s *Server) Decide(ctx context.Context, domain string, descriptors []descriptor.Descriptor, r *Result) error {
	start := time.Now()
	lv := s.live.Load()
	sc := getScratch()
	code, err := s.decideDescriptors(ctx, lv, domain, descriptors, r, sc)
	putScratch(sc)
	s.observe(lv, apiRateLimit, domain, code, start)
	return err
}

func (s *Server) decideDescriptors(ctx context.Context, lv *live, domain string, ds []descriptor.Descriptor, r *Result, sc *scratch) (codeID, error) {
	if err := readDescriptors(domain, ds, &lv.snap.settings.Bounds, lv.snap.rules.Identities(), sc); err != nil {
		return codeInvalidArgument, status.Error(codes.InvalidArgument, err.Error())
	}
	failed, code, err := s.decideVerdicts(ctx, lv, apiRateLimit, domain, sc)
	if err != nil {
		return code, err
	}
	r.Allowed, r.Failed, r.RetryAfter = code != codeOverLimit, failed, 0
	r.Statuses = resize(r.Statuses, len(sc.verdicts))
	for i := range sc.verdicts {
		r.Statuses[i] = statusOf(&sc.verdicts[i])
	}
	if i := refusing(sc.verdicts); i >= 0 && code == codeOverLimit {
		r.RetryAfter = max(0, sc.verdicts[i].result.RetryAfter)
	}
	return code, nil
}

// statusOf reports verdict v.
func statusOf(v *verdict) Status {
	if v.kind != kindCounted {
		return Status{}
	}
	return Status{
		Counted:    true,
		Allowed:    !v.refused(),
		Shadow:     v.shadow,
		Quota:      v.quota,
		Rule:       policyName(v),
		Limit:      v.limit,
		Remaining:  max(0, v.result.Remaining),
		Reset:      max(0, v.result.ResetAfter),
		RetryAfter: max(0, v.result.RetryAfter),
	}
}

// readDescriptors validates a Decide request against b, as readRequest a
// RateLimitService one, and fills sc.entries and sc.verdicts: each
// descriptor copied (the caller's are not changed), its API key values
// canonicalised (canonicalKeys), one hit.
func readDescriptors(domain string, ds []descriptor.Descriptor, b *descriptor.Bounds, ids descriptor.Identities, sc *scratch) error {
	switch {
	case domain == "":
		return errors.New("rate limit request has an empty domain")
	case len(ds) == 0:
		return errors.New("rate limit request has no descriptors")
	}
	if err := b.CheckRequest(len(ds), 0); err != nil {
		return err
	}
	total := 0
	for i, d := range ds {
		if len(d) == 0 {
			return fmt.Errorf("descriptor %d has no entries", i)
		}
		if err := b.CheckDescriptor(i, len(d), 0); err != nil {
			return err
		}
		for j, e := range d {
			if e.Key == "" {
				return fmt.Errorf("descriptor %d entry %d has an empty key", i, j)
			}
			if err := b.CheckEntry(i, j, e.Key); err != nil {
				return err
			}
		}
		total += len(d)
	}
	sc.entries = resize(sc.entries, total)[:0]
	sc.verdicts = resize(sc.verdicts, len(ds))
	for i, d := range ds {
		start := len(sc.entries)
		sc.entries = append(sc.entries, d...)
		canonicalValues(ids, sc.entries[start:], b.ValueLength(), sc)
		sc.verdicts[i] = verdict{desc: sc.entries[start:len(sc.entries):len(sc.entries)], hits: 1}
	}
	return nil
}
