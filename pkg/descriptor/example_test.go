package descriptor_test

import (
	"fmt"

	"github.com/extauthz/extauthz/pkg/descriptor"
)

func ExampleSet_Match() {
	rules, err := descriptor.NewSet([]descriptor.Domain{{
		Name: "edge",
		Descriptors: []descriptor.Node{
			{Key: "remote_address", RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitSecond, RequestsPerUnit: 10}},
			{Key: "remote_address", Value: "50.0.0.5", RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitSecond, RequestsPerUnit: 0}},
		},
	}}, descriptor.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, ip := range []string{"50.0.0.1", "50.0.0.5"} {
		d := descriptor.Descriptor{{Key: "remote_address", Value: ip}}
		r, ok := rules.Match("edge", d)
		if !ok {
			continue
		}
		key := descriptor.AppendKey(nil, r, d)
		fmt.Printf("%s: %s, %d per %s, counter %q\n", ip, r.Path, r.Limit.Requests, r.Unit, key)
	}
	// Output:
	// 50.0.0.1: edge.remote_address, 10 per second, counter "f4:edge14:remote_addressk8:50.0.0.1"
	// 50.0.0.5: edge.remote_address_50.0.0.5, 0 per second, counter "f4:edge14:remote_addresse8:50.0.0.5"
}
