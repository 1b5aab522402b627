package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// The soak test: a minute of load with millions of distinct descriptor
// values against a memory backend holding few counters, and a config reload
// every few seconds. Memory and goroutines must stay flat, evictions must be
// counted, no call may fail, and the reloads must not disturb the counter of
// a rule they do not change. EXTAUTHZ_SOAK sets the duration (e.g. 10s while
// developing); -short skips it. Run with -v to see the samples.
const (
	soakMaxKeys     = 20_000 // memory backend bound
	soakPerRequest  = 50     // distinct descriptors per call (max_descriptors is 64)
	soakWorkers     = 4
	soakReloadEvery = 3 * time.Second
	soakSampleEvery = 5 * time.Second
	soakSteadyLimit = 1_000_000_000      // requests per year of the steady rule
	soakYear        = 365 * 24 * 60 * 60 // seconds in the steady rule's window
)

// soakConfig is the server file; version alternates the rule of domain
// "churn" so that every reload really changes the configuration, while
// domain "soak" stays the same. The churned values count per minute, the
// steady rule per year: a full memory backend evicts the sampled counter
// that expires first, so the steady counter is never evicted and any
// change in it is the reloads' doing.
func soakConfig(version int) string {
	return fmt.Sprintf(`# soak test, version %d
backends:
  - type: memory
    max_keys: %d
log: {level: warn}
domains:
  - domain: soak
    descriptors:
      - key: user
        rate_limit: {unit: minute, requests_per_unit: %d}
      - key: steady
        value: s
        rate_limit: {name: steady, unit: year, requests_per_unit: %d}
  - domain: churn
    descriptors:
      - key: k%d
        rate_limit: {unit: second, requests_per_unit: %d}
`, version, soakMaxKeys, soakSteadyLimit, soakSteadyLimit, version, version+1)
}

// soakSample is one look at the process.
type soakSample struct {
	at         time.Duration
	rssKB      int64
	goroutines float64
	keys       float64
	evictions  float64
	reloads    float64
	calls      int64
	values     int64
}

func (s soakSample) String() string {
	return fmt.Sprintf("t=%-4v rss=%6.1f MiB goroutines=%3.0f keys=%6.0f evictions=%9.0f reloads=%3.0f calls=%8d distinct=%9d",
		s.at.Round(time.Second), float64(s.rssKB)/1024, s.goroutines, s.keys, s.evictions, s.reloads, s.calls, s.values)
}

func soakDuration(t *testing.T) time.Duration {
	if s := os.Getenv("EXTAUTHZ_SOAK"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("EXTAUTHZ_SOAK=%q: %v", s, err)
		}
		return d
	}
	return time.Minute
}

func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("soak test: skipped with -short")
	}
	if runtime.GOOS != "linux" {
		t.Skip("soak test reads /proc; Linux only")
	}
	duration := soakDuration(t)
	dir := t.TempDir()
	cfgPath := WriteFile(t, dir, "extauthz.yaml", soakConfig(0))
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfgPath}})
	pid := p.cmd.Process.Pid
	rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))

	ctx, cancel := context.WithTimeout(context.Background(), duration+30*time.Second)
	defer cancel()
	var (
		stop      atomic.Bool
		calls     atomic.Int64
		values    atomic.Int64 // distinct descriptor values sent
		failures  atomic.Int64
		firstErr  atomic.Value
		steadyMu  sync.Mutex
		steadyN   int64 // hits sent to the steady rule (all in one window)
		steadyWin int64
	)
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}

	// steady checks that the steady rule's counter keeps counting across
	// reloads: each call's remaining is the limit minus every hit sent so
	// far (within one window). One goroutine, so the order is known.
	steady := func() {
		req := &rlsv3.RateLimitRequest{Domain: "soak", Descriptors: []*ratelimitv3.RateLimitDescriptor{
			{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "steady", Value: "s"}}},
		}}
		for !stop.Load() {
			win := time.Now().Unix() / soakYear
			resp, err := rls.ShouldRateLimit(ctx, req)
			if err != nil {
				fail(fmt.Errorf("steady call: %w", err))
				return
			}
			steadyMu.Lock()
			if win != steadyWin {
				steadyWin, steadyN = win, 0 // a new window (or the first call)
			}
			steadyN++
			want := uint32(soakSteadyLimit - steadyN)
			got := resp.GetStatuses()[0].GetLimitRemaining()
			steadyMu.Unlock()
			if got != want && time.Now().Unix()/soakYear == win {
				fail(fmt.Errorf("steady rule after %d hits: remaining %d, want %d (a reload reset or skipped its counter)", steadyN, got, want))
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}

	// churn sends soakPerRequest never-seen values per call.
	churn := func(worker int) {
		req := &rlsv3.RateLimitRequest{Domain: "soak"}
		for range soakPerRequest {
			req.Descriptors = append(req.Descriptors, &ratelimitv3.RateLimitDescriptor{
				Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "user"}},
			})
		}
		for n := int64(0); !stop.Load(); n++ {
			for i, d := range req.Descriptors {
				d.Entries[0].Value = "w" + strconv.Itoa(worker) + "-" + strconv.FormatInt(n*soakPerRequest+int64(i), 36)
			}
			resp, err := rls.ShouldRateLimit(ctx, req)
			if err != nil {
				fail(fmt.Errorf("churn call: %w", err))
				return
			}
			if c := resp.GetOverallCode(); c != rlsv3.RateLimitResponse_OK {
				fail(fmt.Errorf("churn call: overall code %v, want OK (every value is new)", c))
				return
			}
			calls.Add(1)
			values.Add(soakPerRequest)
		}
	}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); steady() }()
	for w := range soakWorkers {
		wg.Add(1)
		go func() { defer wg.Done(); churn(w) }()
	}

	// Reload every few seconds: rewrite the file atomically, as config
	// management does, alternating between two versions.
	version := 0
	reloads := 0
	reloadTick := time.NewTicker(soakReloadEvery)
	defer reloadTick.Stop()
	sampleTick := time.NewTicker(soakSampleEvery)
	defer sampleTick.Stop()
	start := time.Now()
	startMinute := start.Unix() / 60
	end := time.After(duration)
	var samples []soakSample
	sample := func() {
		m := soakMetrics(t, p)
		s := soakSample{
			at: time.Since(start), rssKB: soakRSS(t, pid),
			goroutines: m["go_goroutines"], keys: m[`extauthz_memory_backend_keys{backend="memory"}`],
			evictions: m[`extauthz_memory_backend_evictions_total{backend="memory"}`],
			reloads:   m[`extauthz_config_reloads_total{result="success"}`],
			calls:     calls.Load(), values: values.Load(),
		}
		samples = append(samples, s)
		t.Log(s)
	}
	sample()
loop:
	for {
		select {
		case <-end:
			break loop
		case <-reloadTick.C:
			version = 1 - version
			tmp := filepath.Join(dir, ".extauthz.yaml.tmp")
			if err := os.WriteFile(tmp, []byte(soakConfig(version)), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, cfgPath); err != nil {
				t.Fatal(err)
			}
			reloads++
		case <-sampleTick.C:
			sample()
			if failures.Load() > 0 {
				break loop
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	// Let the last reload land before the final sample.
	time.Sleep(time.Second)
	sample()

	if n := failures.Load(); n > 0 {
		t.Fatalf("%d failed calls; first: %v", n, firstErr.Load())
	}
	last := samples[len(samples)-1]
	t.Logf("%d calls, %d distinct values, %d config rewrites in %v", last.calls, last.values, reloads, last.at.Round(time.Second))

	if last.values < 1_000_000 && duration >= time.Minute {
		t.Errorf("sent %d distinct values, want at least a million in %v", last.values, duration)
	}
	// The bound holds, and the values beyond it evicted counters: a new
	// counter takes a free or expired slot only while the backend fills up
	// and after each minute boundary (when the churned counters expire),
	// at most max_keys each time; otherwise it evicts one.
	if last.keys > soakMaxKeys {
		t.Errorf("memory backend holds %.0f counters, more than max_keys %d", last.keys, soakMaxKeys)
	}
	boundaries := time.Now().Unix()/60 - startMinute
	if want := float64(last.values - soakMaxKeys*(1+boundaries)); last.evictions < want || last.evictions == 0 {
		t.Errorf("evictions %.0f, want at least %.0f (distinct values beyond max_keys per minute window) and some", last.evictions, want)
	}
	// Reloads happened (each rewrite changes the config; bursts may merge).
	if last.reloads < float64(reloads)/2 {
		t.Errorf("successful reloads %.0f, want most of the %d rewrites", last.reloads, reloads)
	}
	// Flat: compare the end with the state once the backend was full.
	var warm soakSample
	for _, s := range samples {
		if s.keys >= soakMaxKeys*0.9 && s.at >= 10*time.Second {
			warm = s
			break
		}
	}
	if warm.at == 0 {
		t.Fatalf("the memory backend never filled up (%d samples): no steady state to compare", len(samples))
	}
	if grow := last.rssKB - warm.rssKB; float64(last.rssKB) > float64(warm.rssKB)*1.5 && grow > 32<<10 {
		t.Errorf("resident memory grew from %.1f MiB (at %v) to %.1f MiB: not flat", float64(warm.rssKB)/1024, warm.at, float64(last.rssKB)/1024)
	}
	if last.goroutines > warm.goroutines+10 {
		t.Errorf("goroutines grew from %.0f (at %v) to %.0f: not flat", warm.goroutines, warm.at, last.goroutines)
	}
	if strings.Contains(p.Logs(), "level=ERROR") {
		t.Errorf("errors logged:\n%s", p.Logs())
	}
}

// soakRSS reads the resident set size (kB) of pid from /proc.
func soakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read RSS: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", rest, err)
			}
			return kb
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// soakMetrics fetches /metrics and returns each sample by its name and
// labels as written ("name{labels}").
func soakMetrics(t *testing.T, p *Process) map[string]float64 {
	t.Helper()
	code, body := p.Get(t, "/metrics")
	if code != 200 {
		t.Fatalf("GET /metrics: %d", code)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m
}
