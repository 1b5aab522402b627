package config_test

import (
	"fmt"
	"strings"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/descriptor"
)

func ExampleLoad() {
	const file = `
grpc_addr: 127.0.0.1:8081
http_addr: 127.0.0.1:8080
domains:
  - domain: edge
    descriptors:
      - key: remote_address
        rate_limit: {unit: minute, requests_per_unit: 100}
`
	cfg, err := config.Load(strings.NewReader(file), "extauthz.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	r, ok := cfg.Rules.Match("edge", descriptor.Descriptor{{Key: "remote_address", Value: "10.0.0.1"}})
	fmt.Println(ok, r.Path, r.Limit)
	// Output: true edge.remote_address 100/1m0s fixed_window
}

func ExampleLoad_errors() {
	const file = `
grpc_addr: 127.0.0.1:8081
domains:
  - domain: edge
    descriptors:
      - key: remote_address
        rate_limit: {unit: minutes, requests_per_unit: -1}
        shadow: true
`
	_, err := config.Load(strings.NewReader(file), "extauthz.yaml")
	fmt.Println(err)
	// Output:
	// extauthz.yaml:7:28: domains[0].descriptors[0].rate_limit.unit: unknown unit "minutes": expected one of second, minute, hour, day, week, month, year
	// extauthz.yaml:7:56: domains[0].descriptors[0].rate_limit.requests_per_unit: -1 is negative: expected 0 or more
	// extauthz.yaml:8:9: domains[0].descriptors[0].shadow: unknown field "shadow"; expected one of: key, value, rate_limit, descriptors, shadow_mode, detailed_metric, value_to_metric, share_threshold, quota_mode, metadata
}
