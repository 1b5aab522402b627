package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// procSample is a process's CPU time (user plus system) and its read and
// write system calls so far, from /proc (Linux); ok is false when they
// could not be read.
type procSample struct {
	cpu      time.Duration
	syscalls int64
	ok       bool
}

// clockTick is the length of a /proc/PID/stat tick: USER_HZ, 100 on every
// Linux architecture Go runs on.
const clockTick = 10 * time.Millisecond

// sampleProc reads pid's CPU time from /proc/PID/stat (fields 14 and 15,
// utime and stime) and its syscr and syscw from /proc/PID/io.
func sampleProc(pid int) procSample {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil || pid <= 0 {
		return procSample{}
	}
	// The command name (field 2) is parenthesised and may hold spaces:
	// count fields after its closing parenthesis (field 3 is the first).
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return procSample{}
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return procSample{}
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return procSample{}
	}
	s := procSample{cpu: time.Duration(utime+stime) * clockTick, ok: true, syscalls: -1}
	if io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid)); err == nil {
		s.syscalls = ioSyscalls(string(io))
	}
	return s
}

// ioSyscalls sums syscr and syscw of a /proc/PID/io text (-1 when absent).
func ioSyscalls(text string) int64 {
	var n int64
	found := 0
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "syscr" && k != "syscw") {
			continue
		}
		x, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			return -1
		}
		n += x
		found++
	}
	if found != 2 {
		return -1
	}
	return n
}

// redisProbe samples a redis-server on this machine: its process (found by
// INFO server's process_id) and its command counters.
type redisProbe struct {
	client *redis.Client
	pid    int
}

// newRedisProbe connects to the redis-server at addr (host:port) and finds
// its process id.
func newRedisProbe(ctx context.Context, addr string) (*redisProbe, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis at %s: INFO server: %w (start redis-server on this machine, or drop -redis-addr)", addr, err)
	}
	pid, _ := strconv.Atoi(infoField(info, "process_id"))
	if pid <= 0 || !sampleProc(pid).ok {
		_ = c.Close()
		return nil, fmt.Errorf("redis at %s: process %q is not readable in /proc: -redis-addr needs a redis-server on this machine", addr, infoField(info, "process_id"))
	}
	return &redisProbe{client: c, pid: pid}, nil
}

func (p *redisProbe) Close() error { return p.client.Close() }

// redisSample is redis-server's process sample and its command counts:
// every command (INFO commandstats, commands that scripts run included)
// and script calls (EVAL, EVALSHA, FCALL and their read-only forms).
type redisSample struct {
	proc            procSample
	commands, evals int64
}

func (p *redisProbe) sample(ctx context.Context) (redisSample, error) {
	info, err := p.client.Info(ctx, "commandstats").Result()
	if err != nil {
		return redisSample{}, fmt.Errorf("redis INFO commandstats: %w", err)
	}
	s := redisSample{proc: sampleProc(p.pid)}
	s.commands, s.evals = commandCounts(info)
	return s, nil
}

// commandCounts sums the calls of an INFO commandstats text: all commands
// and script calls.
func commandCounts(info string) (all, scripts int64) {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		name, rest, ok := strings.Cut(strings.TrimSpace(sc.Text()), ":")
		name, isCmd := strings.CutPrefix(name, "cmdstat_")
		if !ok || !isCmd || name == "info" { // the probe's own
			continue
		}
		calls, _, _ := strings.Cut(strings.TrimPrefix(rest, "calls="), ",")
		n, err := strconv.ParseInt(calls, 10, 64)
		if err != nil {
			continue
		}
		all += n
		switch name {
		case "eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro":
			scripts += n
		}
	}
	return all, scripts
}

// infoField returns the value of "key:value" in an INFO text.
func infoField(info, key string) string {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return ""
}

// costSampler samples a server process, and the redis-server of probe
// when set, at the start and the end of a measured run.
type costSampler struct {
	pid        int
	probe      *redisProbe
	srv0, srv1 procSample
	r0, r1     *redisSample
}

func (cs *costSampler) begin(ctx context.Context) error {
	if cs.probe != nil {
		s, err := cs.probe.sample(ctx)
		if err != nil {
			return err
		}
		cs.r0 = &s
	}
	cs.srv0 = sampleProc(cs.pid)
	return nil
}

func (cs *costSampler) end(ctx context.Context) error {
	cs.srv1 = sampleProc(cs.pid)
	if cs.probe != nil {
		s, err := cs.probe.sample(ctx)
		if err != nil {
			return err
		}
		cs.r1 = &s
	}
	return nil
}

// costs are per-decision figures of one run; NaN-free: a negative value
// means unknown.
type costs struct {
	serverCPU, redisCPU          time.Duration
	serverSyscalls, redisSyscall float64
	redisCommands, redisScripts  float64
	known, redisKnown            bool
}

// perDecision divides the differences between two samples by decisions.
func perDecision(srv0, srv1 procSample, r0, r1 *redisSample, decisions int) costs {
	var c costs
	if decisions <= 0 {
		return c
	}
	d := float64(decisions)
	if srv0.ok && srv1.ok {
		c.known = true
		c.serverCPU = time.Duration(float64(srv1.cpu-srv0.cpu) / d)
		c.serverSyscalls = -1
		if srv0.syscalls >= 0 && srv1.syscalls >= 0 {
			c.serverSyscalls = float64(srv1.syscalls-srv0.syscalls) / d
		}
	}
	if r0 != nil && r1 != nil && r0.proc.ok && r1.proc.ok {
		c.redisKnown = true
		c.redisCPU = time.Duration(float64(r1.proc.cpu-r0.proc.cpu) / d)
		c.redisSyscall = -1
		if r0.proc.syscalls >= 0 && r1.proc.syscalls >= 0 {
			c.redisSyscall = float64(r1.proc.syscalls-r0.proc.syscalls) / d
		}
		c.redisCommands = float64(r1.commands-r0.commands) / d
		c.redisScripts = float64(r1.evals-r0.evals) / d
	}
	return c
}
