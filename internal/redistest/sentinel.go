package redistest

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// MasterName is the name under which the Sentinel setup monitors its master.
const MasterName = "mymaster"

// Sentinel is one master, one replica and one sentinel monitoring them with
// quorum 1.
type Sentinel struct {
	// Servers are the master and the replica at start; after a failover
	// their roles are swapped (see Master).
	Servers [2]*Server
	// Sentinel is the sentinel process.
	Sentinel *Server
}

// StartSentinel starts a master, a replica of it, waits until the replica
// is in sync, then starts a sentinel monitoring the master (so its first
// INFO already lists the replica). Everything stops when t ends.
func StartSentinel(t testing.TB) *Sentinel {
	t.Helper()
	bin := Binary(t, "redis-server")
	master := startServer(t, bin, "redis", nil, func(int) []string { return nil })
	replica := startServer(t, bin, "redis", nil, func(int) []string {
		return []string{"replicaof 127.0.0.1 " + strconv.Itoa(master.Port)}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitReplicaSynced(ctx, replica.Addr); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	sentinel := startServer(t, bin, "sentinel", []string{"--sentinel"}, func(int) []string {
		return []string{
			fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1", MasterName, master.Port),
			"sentinel down-after-milliseconds " + MasterName + " 1000",
			"sentinel failover-timeout " + MasterName + " 10000",
			"sentinel parallel-syncs " + MasterName + " 1",
		}
	})
	s := &Sentinel{Servers: [2]*Server{master, replica}, Sentinel: sentinel}
	if err := s.waitReplicaKnown(ctx); err != nil {
		t.Fatalf("redistest: %v", err)
	}
	return s
}

// Addrs returns the sentinel addresses (the seed list of a failover client).
func (s *Sentinel) Addrs() []string { return []string{s.Sentinel.Addr} }

// Master asks the sentinel which server is the master now.
func (s *Sentinel) Master(ctx context.Context) (*Server, error) {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr, DisableIdentity: true, MaxRetries: -1})
	defer sc.Close()
	addr, err := sc.GetMasterAddrByName(ctx, MasterName).Result()
	if err != nil {
		return nil, fmt.Errorf("redistest: SENTINEL GET-MASTER-ADDR-BY-NAME: %w", err)
	}
	if len(addr) != 2 {
		return nil, fmt.Errorf("redistest: SENTINEL GET-MASTER-ADDR-BY-NAME answered %q", addr)
	}
	hp := net.JoinHostPort(addr[0], addr[1])
	for _, srv := range s.Servers {
		if srv.Addr == hp {
			return srv, nil
		}
	}
	return nil, fmt.Errorf("redistest: sentinel names unknown master %s", hp)
}

// Failover forces a failover with SENTINEL FAILOVER and waits until the
// sentinel names the former replica as master and that server has taken the
// master role. It returns the new master.
func (s *Sentinel) Failover(t testing.TB) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	old, err := s.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr, DisableIdentity: true, MaxRetries: -1})
	defer sc.Close()
	if err := sc.Failover(ctx, MasterName).Err(); err != nil {
		t.Fatalf("redistest: SENTINEL FAILOVER: %v", err)
	}
	for {
		m, err := s.Master(ctx)
		if err == nil && m != old && role(ctx, m.Addr) == "master" {
			return m
		}
		select {
		case <-ctx.Done():
			t.Fatalf("redistest: failover did not complete: master %v, err %v; sentinel log: %s", m, err, s.Sentinel.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// role returns the first element of ROLE ("master", "slave") or "".
func role(ctx context.Context, addr string) string {
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, MaxRetries: -1})
	defer c.Close()
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil || len(v) == 0 {
		return ""
	}
	r, _ := v[0].(string)
	return r
}

// waitReplicaSynced polls INFO replication until master_link_status:up.
func waitReplicaSynced(ctx context.Context, addr string) error {
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, MaxRetries: -1})
	defer c.Close()
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && strings.Contains(info, "master_link_status:up") {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replica %s not in sync: %v; INFO: %s", addr, err, info)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitReplicaKnown polls SENTINEL REPLICAS until the sentinel lists a
// healthy replica, which SENTINEL FAILOVER needs.
func (s *Sentinel) waitReplicaKnown(ctx context.Context) error {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinel.Addr, DisableIdentity: true, MaxRetries: -1})
	defer sc.Close()
	for {
		reps, err := sc.Replicas(ctx, MasterName).Result()
		if err == nil {
			for _, r := range reps {
				if r["flags"] == "slave" && r["master-link-status"] == "ok" {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sentinel does not know a healthy replica: %v %v; log: %s", reps, err, s.Sentinel.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
