package config

import (
	"math"
	"reflect"
	"slices"
	"strconv"

	"google.golang.org/protobuf/types/known/structpb"
	"gopkg.in/yaml.v3"
)

// A descriptor's metadata is any YAML mapping, decoded straight into the
// protobuf Struct the RateLimitService returns in dynamic_metadata (as
// envoyproxy/ratelimit does): mappings become structs, lists lists,
// booleans and null themselves, integers and floats numbers (a JSON
// number: integers beyond 2^53 lose precision), and every other scalar
// (strings, timestamps, binary) its text. Keys must be strings. The
// decoder's limits on size and aliases apply, and nesting is bounded.

// maxMetadataDepth bounds the nesting of a descriptor's metadata.
const maxMetadataDepth = 32

var structPtrType = reflect.TypeFor[*structpb.Struct]()

// decodeMetadata decodes mapping n (aliases followed, not null) into a
// Struct stored in v (of type *structpb.Struct).
func (d *decoder) decodeMetadata(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping of metadata (e.g. metadata: {team: search}), got %s", kindName(n))
		return
	}
	if s := d.metadataStruct(n, path, 1); s != nil {
		v.Set(reflect.ValueOf(s))
	}
}

func (d *decoder) metadataStruct(n *yaml.Node, path string, depth int) *structpb.Struct {
	s := &structpb.Struct{Fields: make(map[string]*structpb.Value)}
	for _, kv := range d.pairs(n, path) {
		p := join(path, kv.key.Value)
		if val := d.metadataValue(kv.value, p, depth); val != nil {
			s.Fields[kv.key.Value] = val
		}
	}
	return s
}

// metadataValue converts n; nil after an error (reported).
func (d *decoder) metadataValue(n *yaml.Node, path string, depth int) *structpb.Value {
	if !d.visit(n, path) {
		return nil
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return nil
		}
		d.aliasDepth++
		defer func() { d.aliasDepth-- }()
		n = n.Alias
	}
	if depth >= maxMetadataDepth {
		d.errorf(n, path, "metadata nested deeper than %d levels: flatten it", maxMetadataDepth)
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		return structpb.NewStructValue(d.metadataStruct(n, path, depth+1))
	case yaml.SequenceNode:
		l := &structpb.ListValue{Values: make([]*structpb.Value, 0, len(n.Content))}
		for i, c := range n.Content {
			if v := d.metadataValue(c, path+"["+strconv.Itoa(i)+"]", depth+1); v != nil {
				l.Values = append(l.Values, v)
			}
		}
		return structpb.NewListValue(l)
	case yaml.ScalarNode:
		return d.metadataScalar(n, path)
	}
	d.errorf(n, path, "expected a metadata value, got %s", kindName(n))
	return nil
}

func (d *decoder) metadataScalar(n *yaml.Node, path string) *structpb.Value {
	switch n.ShortTag() {
	case "!!null":
		return structpb.NewNullValue()
	case "!!bool":
		var b bool
		if d.leaf(n, path, &b, "true or false", "") {
			return structpb.NewBoolValue(b)
		}
		return nil
	case "!!int", "!!float":
		var f float64
		if !d.leaf(n, path, &f, "a number", "") {
			return nil
		}
		if math.IsNaN(f) || math.IsInf(f, 0) {
			d.errorf(n, path, "expected a finite number (metadata is JSON), got %q; quote it to send a string", n.Value)
			return nil
		}
		return structpb.NewNumberValue(f)
	}
	return structpb.NewStringValue(n.Value)
}

// encodeMetadata renders s as YAML (the inverse of decodeMetadata), keys
// sorted.
func encodeMetadata(s *structpb.Struct) *yaml.Node {
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	if len(s.GetFields()) == 0 {
		m.Style = yaml.FlowStyle
	}
	keys := make([]string, 0, len(s.GetFields()))
	for k := range s.GetFields() {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		m.Content = append(m.Content, scalarNode("!!str", k), encodeMetadataValue(s.Fields[k]))
	}
	return m
}

func encodeMetadataValue(v *structpb.Value) *yaml.Node {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StructValue:
		return encodeMetadata(k.StructValue)
	case *structpb.Value_ListValue:
		l := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if len(k.ListValue.GetValues()) == 0 {
			l.Style = yaml.FlowStyle
		}
		for _, e := range k.ListValue.GetValues() {
			l.Content = append(l.Content, encodeMetadataValue(e))
		}
		return l
	case *structpb.Value_BoolValue:
		return scalarNode("!!bool", strconv.FormatBool(k.BoolValue))
	case *structpb.Value_NumberValue:
		f := k.NumberValue
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return scalarNode("!!int", strconv.FormatInt(int64(f), 10))
		}
		return scalarNode("!!float", strconv.FormatFloat(f, 'g', -1, 64))
	case *structpb.Value_StringValue:
		return scalarNode("!!str", k.StringValue)
	}
	return scalarNode("!!null", "null")
}
