package limiter

import (
	"errors"
	"fmt"
	"time"
)

// ErrInvalidRequest is wrapped by CheckRequests for requests that no Limit
// can count: negative hits, or a result slice shorter than the requests.
var ErrInvalidRequest = errors.New("invalid request")

// IsRequestError reports whether err says the request is bad, not the
// store: it wraps ErrInvalidRequest, ErrInvalidLimit or ErrUnknownAlgorithm.
// Such an error counts against no backend and is not worth a retry.
func IsRequestError(err error) bool {
	return errors.Is(err, ErrInvalidRequest) || errors.Is(err, ErrInvalidLimit) || errors.Is(err, ErrUnknownAlgorithm)
}

// CheckRequests reports, before anything is counted, why reqs cannot be
// applied: a Limit that fails Validate (wrapping ErrInvalidLimit or
// ErrUnknownAlgorithm), negative Hits or len(res) < len(reqs) (wrapping
// ErrInvalidRequest). It does not allocate unless it returns an error. Stores
// call it first in Take.
func CheckRequests(reqs []Request, res []Result) error {
	if len(res) < len(reqs) {
		return fmt.Errorf("%w: %d results for %d requests", ErrInvalidRequest, len(res), len(reqs))
	}
	for i := range reqs {
		r := &reqs[i]
		if r.Hits < 0 {
			return fmt.Errorf("%w: request %d: hits %d is negative", ErrInvalidRequest, i, r.Hits)
		}
		if err := r.Limit.Validate(); err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
	}
	return nil
}

// stackRequests is how many requests ApplyAll handles without allocating.
const stackRequests = 8

// ApplyAll applies the requests of one Store.Take call, in order, and writes
// res[i] for reqs[i]. On input states[i] is the stored state of reqs[i].Key
// (the zero State for a key not stored); on return it is the state to store
// for that key. Requests with the same Key share one counter: only the first
// one's input state is read, the second sees the first's hits, and all of
// them return the same final state (so writing states back in any order is
// correct). Callers hold whatever locks guard the stored states, and have
// checked the requests with CheckRequests; len(states) and len(res) are at
// least len(reqs).
//
// In CountAll mode each request is applied with Apply, independently of the
// others. In CountIfAllAllowed mode the requests are applied the same way, in
// order; if any request that is not Shadow is refused, every state is put
// back as it was, so nothing is counted (not even a fixed window's refused
// hits), and then:
//   - Allowed and RetryAfter keep the values of the in-order evaluation (a
//     request refused only because an earlier one of the call used the room
//     reports the wait for the whole call);
//   - Remaining and ResetAfter describe the unchanged state, as a read
//     (hits == 0) would.
//
// ApplyAll allocates only when len(reqs) > 8 in CountIfAllAllowed mode.
// Finding requests with the same Key costs O(len(reqs)²) string comparisons,
// which is nothing for the handful of descriptors of one rate-limit call.
// Stores that cannot share this code (Lua) mirror it exactly.
func ApplyAll(mode Mode, now time.Time, reqs []Request, states []State, res []Result) {
	if mode == CountIfAllAllowed {
		applyAllOrNothing(now, reqs, states, res)
		return
	}
	ns := now.UnixNano()
	for i := range reqs {
		reqs[i].Limit.apply(&states[firstWithKey(reqs, i)], ns, reqs[i].Hits, &res[i])
	}
	shareDuplicates(reqs, states)
}

// applyAllOrNothing is ApplyAll in CountIfAllAllowed mode. It is separate so
// that CountAll calls do not pay for zeroing the saved states.
func applyAllOrNothing(now time.Time, reqs []Request, states []State, res []Result) {
	var buf [stackRequests]State
	saved := buf[:0]
	if len(reqs) > len(buf) {
		saved = make([]State, 0, len(reqs))
	}
	saved = append(saved, states[:len(reqs)]...)
	ns := now.UnixNano()
	all := true
	for i := range reqs {
		reqs[i].Limit.apply(&states[firstWithKey(reqs, i)], ns, reqs[i].Hits, &res[i])
		all = all && (res[i].Allowed || reqs[i].Shadow)
	}
	if all {
		shareDuplicates(reqs, states)
		return
	}
	copy(states, saved)
	shareDuplicates(reqs, states)
	for i := range reqs {
		var r Result
		st := states[i]
		reqs[i].Limit.apply(&st, ns, 0, &r)
		res[i].Remaining = r.Remaining
		res[i].ResetAfter = r.ResetAfter
	}
}

// shareDuplicates gives every request the final state of the first request
// with the same key.
func shareDuplicates(reqs []Request, states []State) {
	for i := 1; i < len(reqs); i++ {
		if f := firstWithKey(reqs, i); f != i {
			states[i] = states[f]
		}
	}
}

// firstWithKey returns the index of the first request with reqs[i].Key.
func firstWithKey(reqs []Request, i int) int {
	for k := range i {
		if reqs[k].Key == reqs[i].Key {
			return k
		}
	}
	return i
}
