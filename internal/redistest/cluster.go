package redistest

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of three masters without replicas, created with
// redis-cli --cluster create.
type Cluster struct {
	// Nodes are the three masters, in creation order.
	Nodes []*Server
}

// StartCluster starts three cluster-enabled redis-servers, joins them with
// redis-cli --cluster create (slots split evenly), waits until every node
// reports cluster_state:ok, and stops them when t ends.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	bin := Binary(t, "redis-server")
	cli := Binary(t, "redis-cli")
	c := &Cluster{}
	for range 3 {
		lines := func(port int) []string {
			bus := port
			for bus == port {
				p, err := FreePort()
				if err != nil {
					t.Fatalf("redistest: %v", err)
				}
				bus = p
			}
			return []string{
				"cluster-enabled yes",
				"cluster-config-file nodes.conf",
				"cluster-node-timeout 2000",
				"cluster-port " + strconv.Itoa(bus),
			}
		}
		c.Nodes = append(c.Nodes, startServer(t, bin, "node", nil, lines))
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("redistest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if err := c.waitReady(ctx); err != nil {
		t.Fatalf("redistest: %v\nredis-cli output:\n%s", err, out)
	}
	return c
}

// Addrs returns the nodes' addresses (the seed list for a cluster client).
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Client returns a go-redis cluster client, closed when t ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), DisableIdentity: true})
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// waitReady polls every node until each reports cluster_state:ok with all
// slots assigned and every node known, so the first client sees the final
// slot map.
func (c *Cluster) waitReady(ctx context.Context) error {
	for _, n := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, DisableIdentity: true, MaxRetries: -1})
		var info string
		for {
			var err error
			info, err = cl.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") &&
				strings.Contains(info, "cluster_slots_assigned:16384") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(c.Nodes))) {
				break
			}
			select {
			case <-ctx.Done():
				_ = cl.Close()
				return fmt.Errorf("cluster node %s not ready: %v; last CLUSTER INFO:\n%s", n.Addr, err, info)
			case <-time.After(50 * time.Millisecond):
			}
		}
		_ = cl.Close()
	}
	return nil
}

// CommandStats sums INFO commandstats calls over every node.
func (c *Cluster) CommandStats(ctx context.Context) (map[string]int64, error) {
	total := make(map[string]int64)
	for _, n := range c.Nodes {
		s, err := n.CommandStats(ctx)
		if err != nil {
			return nil, err
		}
		for k, v := range s {
			total[k] += v
		}
	}
	return total, nil
}
