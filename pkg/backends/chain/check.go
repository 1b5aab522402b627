package chain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// errNoPing is reported by Check for a non-local store that has no Ping.
var errNoPing = errors.New("store cannot be probed (no Ping method)")

// Check probes every backend once, concurrently, each probe bounded by
// timeout (DefaultHealthTimeout when not positive), and returns their
// statuses in order: StateClosed for a backend that answered, StateOpen for
// one that did not. No breaker is involved. It is the `extauthz health`
// command; it returns when every probe has (stores must honour ctx).
func Check(ctx context.Context, backends []Backend, timeout time.Duration) []Status {
	if timeout <= 0 {
		timeout = DefaultHealthTimeout
	}
	out := make([]Status, len(backends))
	var wg sync.WaitGroup
	for i, b := range backends {
		out[i] = Status{Name: b.Name, Addr: b.Addr, Local: b.Local}
		p, ok := b.Store.(Pinger)
		if !ok {
			if !b.Local {
				out[i].State, out[i].Err = StateOpen, errNoPing
			}
			continue
		}
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			start := time.Now()
			err := p.Ping(pctx)
			s := &out[i]
			s.Probed, s.At, s.Latency, s.Err = true, start, time.Since(start), err
			if err != nil {
				s.State = StateOpen
			}
		})
	}
	wg.Wait()
	return out
}

// WriteTable writes statuses to w as an aligned table with the columns
// BACKEND, ADDRESS, LATENCY, STATE (up, down or probing) and ERROR, and
// reports whether any backend is usable.
func WriteTable(w io.Writer, statuses []Status) (usable bool, err error) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "BACKEND\tADDRESS\tLATENCY\tSTATE\tERROR")
	for _, s := range statuses {
		usable = usable || s.Usable()
		addr, lat, msg := dash(s.Addr), "-", "-"
		if s.Local && s.Addr == "" {
			addr = "(in process)"
		}
		if s.Probed {
			lat = s.Latency.Round(time.Microsecond).String()
		}
		if s.Err != nil {
			msg = strings.Join(strings.Fields(s.Err.Error()), " ") // one line
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, addr, lat, stateLabel(s.State), msg)
	}
	if err := tw.Flush(); err != nil {
		return usable, fmt.Errorf("chain: write health table: %w", err)
	}
	return usable, nil
}

func stateLabel(s State) string {
	switch s {
	case StateClosed:
		return "up"
	case StateHalfOpen:
		return "probing"
	default:
		return "down"
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
