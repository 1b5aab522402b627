package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/rlsclient"
)

// Exit codes of check besides 0 (OK), 1 (no decision) and 2 (usage).
const exitOverLimit = 3

const checkSynopsis = "check [--addr HOST:PORT] --domain D --descriptor k=v[,k=v...] [--descriptor ...] [--hits N] [--json] [--timeout D] [--tls] [--ca-file F] [--cert-file F --key-file F] [--server-name N]"

// checkOptions are the flags of check.
type checkOptions struct {
	addr, domain, serverName string
	descriptors              descriptorFlags
	hits                     uint64
	asJSON, useTLS           bool
	timeout                  time.Duration
	tls                      tlsFlags
}

// checkCmd is `extauthz check`: one RateLimitService call to a running
// server, as Envoy would make it, printing the overall code and each
// descriptor's status (or, with --json, the response in protojson). It
// exits 0 for OK, exitOverLimit for OVER_LIMIT and 1 when there is no
// decision (server unreachable or refusing the request). --hits 0 reads
// the counters without counting.
func checkCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o checkOptions
	fs := newFlagSet("check", checkSynopsis, stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8081", "the server's gRPC listener (grpc_addr), HOST:PORT")
	fs.StringVar(&o.domain, "domain", "", "rate limit domain of the request")
	fs.Var(&o.descriptors, "descriptor", "a descriptor as key=value[,key=value...] (repeatable; '\\' escapes ',' and '=')")
	fs.Uint64Var(&o.hits, "hits", 1, "hits to count per descriptor (hits_addend); 0 reads the counters without counting")
	fs.BoolVar(&o.asJSON, "json", false, "print the RateLimitResponse as protojson")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "how long to wait for the answer")
	fs.BoolVar(&o.useTLS, "tls", false, "use TLS with the system's CAs (implied by --ca-file and --cert-file)")
	o.tls.register(fs, "gRPC listener")
	fs.StringVar(&o.serverName, "server-name", "", "name to verify the server's certificate against (default: the host of --addr)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "extauthz check: %v\n", err)
		fs.Usage()
		return errUsage
	}
	copts := rlsclient.Options{Timeout: o.timeout}
	if o.useTLS || o.tls.set() || o.serverName != "" {
		tc, err := o.tls.config()
		if err != nil {
			return &exitError{code: 2, msg: "check: " + err.Error()}
		}
		tc.ServerName = o.serverName
		copts.TLS = tc
	}
	c, err := rlsclient.Dial(o.addr, copts)
	if err != nil {
		return &exitError{code: 1, msg: fmt.Sprintf("check: %v; --addr takes HOST:PORT", err)}
	}
	defer c.Close()
	resp, err := c.ShouldRateLimit(ctx, o.request())
	if err != nil {
		return &exitError{code: 1, msg: o.explainError(err)}
	}
	if err := o.print(stdout, resp); err != nil {
		return err
	}
	if resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
		return &exitError{code: exitOverLimit}
	}
	return nil
}

// validate checks the flags.
func (o *checkOptions) validate() error {
	switch {
	case o.domain == "" || len(o.descriptors) == 0:
		return fmt.Errorf("--domain and at least one --descriptor are required")
	case o.hits > math.MaxUint32:
		return fmt.Errorf("--hits %d: expected 0 to %d", o.hits, uint32(math.MaxUint32))
	case o.timeout <= 0:
		return fmt.Errorf("--timeout %v: expected a positive duration such as 5s", o.timeout)
	}
	return nil
}

// request builds the RateLimitRequest of the flags. --hits 0 is sent as
// each descriptor's hits_addend 0 (a request-level 0 would mean 1).
func (o *checkOptions) request() *rlsv3.RateLimitRequest {
	req := &rlsv3.RateLimitRequest{Domain: o.domain, HitsAddend: uint32(o.hits)}
	for _, d := range o.descriptors {
		pd := &ratelimitv3.RateLimitDescriptor{}
		for _, e := range d {
			pd.Entries = append(pd.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: e.Key, Value: e.Value})
		}
		if o.hits == 0 {
			pd.HitsAddend = wrapperspb.UInt64(0)
		}
		req.Descriptors = append(req.Descriptors, pd)
	}
	return req
}

// explainError says why the call gave no decision and what to try.
func (o *checkOptions) explainError(err error) string {
	st := status.Convert(err)
	msg := sanitize(st.Message(), 400)
	switch st.Code() {
	case codes.InvalidArgument:
		return fmt.Sprintf("check: the server refused the request: %s; fix --domain, --descriptor or --hits", msg)
	case codes.DeadlineExceeded:
		return fmt.Sprintf("check: no answer from %s within %v; retry with a longer --timeout, or see whether its backends are slow (extauthz health --config FILE)", o.addr, o.timeout)
	case codes.Unavailable:
		return fmt.Sprintf("check: no decision from %s: %s; check that extauthz serve runs there and that --addr is its grpc_addr (not http_addr), "+
			"add --tls or --ca-file if its gRPC listener uses TLS (--cert-file and --key-file for mTLS), "+
			"or, if it runs, whether its backends are up (extauthz health --config FILE)", o.addr, msg)
	case codes.Unimplemented:
		return fmt.Sprintf("check: %s does not serve Envoy's RateLimitService v3 (%s); point --addr at extauthz's grpc_addr", o.addr, msg)
	}
	return fmt.Sprintf("check: %s answered %s: %s; its logs say more", o.addr, st.Code(), msg)
}

// print writes resp as protojson (--json) or as a readable table.
func (o *checkOptions) print(w io.Writer, resp *rlsv3.RateLimitResponse) error {
	if o.asJSON {
		// protojson varies its white space on purpose; json.Indent makes
		// the output stable.
		b, err := protojson.Marshal(resp)
		if err != nil {
			return fmt.Errorf("check: encode the response: %w", err)
		}
		var out bytes.Buffer
		if err := json.Indent(&out, b, "", "  "); err != nil {
			return fmt.Errorf("check: encode the response: %w", err)
		}
		out.WriteByte('\n')
		_, err = w.Write(out.Bytes())
		return err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s  domain %s, %d descriptor(s), %s\n\n", resp.GetOverallCode(), sanitize(o.domain, 64), len(o.descriptors), hitsNote(o.hits))
	t := table{header: []string{"DESCRIPTOR", "CODE", "LIMIT", "REMAINING", "RESET"}, num: [2]int{3, 5}}
	for i, d := range o.descriptors {
		var st *rlsv3.RateLimitResponse_DescriptorStatus
		if i < len(resp.GetStatuses()) {
			st = resp.GetStatuses()[i]
		}
		t.add(append([]string{sanitize(descString(d), 48)}, statusCells(st)...)...)
	}
	t.write(&b)
	if hs := resp.GetResponseHeadersToAdd(); len(hs) > 0 {
		b.WriteString("\nHeaders for the client:\n")
		for _, h := range hs {
			fmt.Fprintf(&b, "  %s: %s\n", sanitize(h.GetKey(), 64), sanitize(h.GetValue(), 200))
		}
	}
	_, err := w.Write(b.Bytes())
	return err
}

// descString formats d as --descriptor takes it: key=value,key=value.
func descString(d descriptor.Descriptor) string {
	parts := make([]string, len(d))
	for i, e := range d {
		parts[i] = e.Key + "=" + e.Value
	}
	return strings.Join(parts, ",")
}

func hitsNote(hits uint64) string {
	if hits == 0 {
		return "nothing counted (--hits 0)"
	}
	return strconv.FormatUint(hits, 10) + " hit(s) counted"
}

// statusCells formats one descriptor's status: code, limit, remaining and
// reset. A status without a limit is unlimited (remaining at its maximum,
// as envoyproxy/ratelimit reports it) or matched no rule.
func statusCells(st *rlsv3.RateLimitResponse_DescriptorStatus) []string {
	if st == nil {
		return []string{"-", "(no status returned)", "", ""}
	}
	l := st.GetCurrentLimit()
	if l == nil {
		if st.GetLimitRemaining() == math.MaxUint32 {
			return []string{st.GetCode().String(), "unlimited", "", ""}
		}
		return []string{st.GetCode().String(), "no limit applies", "", ""}
	}
	limit := fmt.Sprintf("%d per %s", l.GetRequestsPerUnit(), unitName(l))
	if n := l.GetName(); n != "" {
		limit += " (" + sanitize(n, 40) + ")"
	}
	reset := "-"
	if d := st.GetDurationUntilReset(); d != nil {
		reset = roundReset(d.AsDuration()).String()
	}
	return []string{st.GetCode().String(), limit, strconv.FormatUint(uint64(st.GetLimitRemaining()), 10), reset}
}

// roundReset rounds a time to reset to the second, or the millisecond
// below a second.
func roundReset(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// unitName is "minute", or "5 minutes" with a unit multiplier.
func unitName(l *rlsv3.RateLimitResponse_RateLimit) string {
	u := strings.ToLower(l.GetUnit().String())
	if m := l.GetUnitMultiplier().GetValue(); m > 1 {
		return fmt.Sprintf("%d %ss", m, u)
	}
	return u
}
