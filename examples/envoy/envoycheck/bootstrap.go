// Package envoycheck validates Envoy bootstrap files offline, without running
// Envoy, and computes the rate-limit descriptors their rate_limits actions
// produce so that tests can check them against extauthz's rules.
//
// It backs the tests of examples/envoy and of the Helm chart's sidecar mode.
// It knows the extensions blank-imported in extensions.go; a typed_config of
// any other type fails to resolve, so add the import when an example starts
// using a new extension.
package envoycheck

import (
	"errors"
	"fmt"
	"os"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"sigs.k8s.io/yaml"
)

// LoadBootstrap reads the Envoy bootstrap file at path; see ParseBootstrap.
func LoadBootstrap(path string) (*bootstrapv3.Bootstrap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("envoycheck: %w", err)
	}
	b, err := ParseBootstrap(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// ParseBootstrap decodes an Envoy bootstrap in YAML (or JSON) the way Envoy
// does: YAML → JSON → protojson, rejecting unknown fields and unresolvable
// typed_config types. It then runs the generated ValidateAll on the bootstrap
// and on the message inside every google.protobuf.Any, at any depth, and
// rejects fields that Envoy's API marks deprecated.
func ParseBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("envoycheck: yaml: %w", err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		return nil, fmt.Errorf("envoycheck: decode bootstrap: %w", err)
	}
	if err := Validate(&b); err != nil {
		return nil, err
	}
	return &b, nil
}

// Validate runs ValidateAll on m and on every message packed in an Any inside
// it, and reports deprecated fields. All problems are returned joined.
func Validate(m proto.Message) error {
	var errs []error
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			errs = append(errs, fmt.Errorf("envoycheck: %s: %w", m.ProtoReflect().Descriptor().FullName(), err))
		}
	}
	walk(m.ProtoReflect(), string(m.ProtoReflect().Descriptor().Name()), &errs)
	return errors.Join(errs...)
}

// walk visits every set field of m. Messages packed in an Any are unpacked,
// validated and walked in turn.
func walk(m protoreflect.Message, path string, errs *[]error) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			*errs = append(*errs, fmt.Errorf("envoycheck: %s: unpack %s: %w", path, a.GetTypeUrl(), err))
			return
		}
		if v, ok := inner.(interface{ ValidateAll() error }); ok {
			if err := v.ValidateAll(); err != nil {
				*errs = append(*errs, fmt.Errorf("envoycheck: %s (%s): %w", path, a.GetTypeUrl(), err))
			}
		}
		walk(inner.ProtoReflect(), path, errs)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
			*errs = append(*errs, fmt.Errorf("envoycheck: %s: field is deprecated in Envoy's API", p))
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				walk(l.Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), errs)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				walk(mv.Message(), fmt.Sprintf("%s[%s]", p, k.String()), errs)
				return true
			})
		case fd.Message() != nil && !fd.IsList() && !fd.IsMap():
			walk(v.Message(), p, errs)
		}
		return true
	})
}

// unpack returns the message in a, or an error naming where it is.
func unpack[T proto.Message](a *anypb.Any, where string) (T, error) {
	var zero T
	m, err := a.UnmarshalNew()
	if err != nil {
		return zero, fmt.Errorf("envoycheck: %s: %w", where, err)
	}
	t, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("envoycheck: %s: got %s, want %s", where, m.ProtoReflect().Descriptor().FullName(),
			zero.ProtoReflect().Descriptor().FullName())
	}
	return t, nil
}

// typeIs reports whether a holds a message of type T.
func typeIs[T proto.Message](a *anypb.Any) bool {
	var zero T
	return a.MessageIs(zero)
}
