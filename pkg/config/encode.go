package config

import (
	"bytes"
	"encoding"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"gopkg.in/yaml.v3"
)

// Redacted renders the effective configuration as YAML, for the /config
// endpoint: every setting with its defaults filled in, and every domain,
// the rule files of rules_dir included inline (each with a comment naming
// its file), so the output is itself a valid server file. Secrets print as
// "<redacted>".
func (cfg *Config) Redacted() ([]byte, error) {
	eff := *cfg
	eff.RulesDir = ""
	eff.Runtime = nil
	eff.Domains = append(slices.Clone(cfg.Domains), cfg.dirDomains...)
	root, err := encodeValue(reflect.ValueOf(&eff).Elem())
	if err != nil {
		return nil, fmt.Errorf("config: render: %w", err)
	}
	if root == nil {
		root = &yaml.Node{Kind: yaml.MappingNode}
	}
	root.HeadComment = "Effective configuration; secrets redacted."
	if cfg.File != "" {
		root.HeadComment = fmt.Sprintf("Effective configuration of %s; secrets redacted.", cfg.File)
	}
	if cfg.RulesDir != "" {
		root.HeadComment += fmt.Sprintf("\nrules_dir %s is shown inline under domains.", cfg.RulesDir)
	}
	if cfg.RulesXDS != nil {
		root.HeadComment += "\ndomains are the rules of the last xDS update applied (rules_xds), shown for reference:" +
			"\nremove them before using this output as a server file."
	}
	if r := cfg.Runtime; r != nil {
		root.HeadComment += fmt.Sprintf("\nThe rule files of runtime (root %s, subdirectory %q, app_directory %q) are shown inline under domains.", r.Root, r.Subdirectory, r.AppDirectory)
	}
	// Mark the domains read from rules_dir with their file.
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "domains" {
			continue
		}
		items := root.Content[i+1].Content
		for j, d := range eff.Domains {
			if j >= len(cfg.Domains) && j < len(items) {
				items[j].HeadComment = "from " + d.File
			}
		}
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("config: render: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: render: %w", err)
	}
	return buf.Bytes(), nil
}

var (
	marshalerType = reflect.TypeFor[encoding.TextMarshaler]()
	secretType    = reflect.TypeFor[Secret]()
	timeType      = reflect.TypeFor[time.Time]()
)

func scalarNode(tag, value string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: value}
}

// encodeValue is the inverse of the decoder: it renders v as a node, or nil
// when v is empty and should be left out. Zero values are left out, and so
// are TextMarshalers whose text is empty; an enum's zero value has a name
// (fixed_window, all) and is shown, so the output lists what is in effect
// without noise.
func encodeValue(v reflect.Value) (*yaml.Node, error) {
	t := v.Type()
	switch {
	case t == secretType:
		if v.String() == "" {
			return nil, nil
		}
		return scalarNode("!!str", RedactedText), nil
	case t == structPtrType:
		if v.IsNil() {
			return nil, nil
		}
		return encodeMetadata(v.Interface().(*structpb.Struct)), nil
	case t == durationType:
		if v.Int() == 0 {
			return nil, nil
		}
		return scalarNode("!!str", fmt.Sprint(v.Interface())), nil
	case t == timeType:
		// A zero time is unset (e.g. an API key that never expires).
		if v.Interface().(time.Time).IsZero() {
			return nil, nil
		}
		return encodeText(v)
	case t.Implements(marshalerType) && t.Kind() != reflect.Pointer:
		return encodeText(v)
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil, nil
		}
		n, err := encodeValue(v.Elem())
		if n == nil && err == nil {
			// A pointer to a zero value is set on purpose (e.g.
			// requests_per_unit: 0): render the zero.
			return zeroNode(v.Elem())
		}
		return n, err
	case reflect.Struct:
		m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		if err := encodeFields(m, v); err != nil {
			return nil, err
		}
		if len(m.Content) == 0 {
			return nil, nil
		}
		return m, nil
	case reflect.Slice:
		if v.Len() == 0 {
			return nil, nil
		}
		s := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for i := range v.Len() {
			n, err := encodeValue(v.Index(i))
			if err != nil {
				return nil, err
			}
			if n == nil {
				n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle}
			}
			s.Content = append(s.Content, n)
		}
		return s, nil
	case reflect.Map:
		return encodeMap(v)
	}
	if v.IsZero() {
		return nil, nil
	}
	return zeroNode(v)
}

// encodeMap renders a map with string keys, sorted, or nil when empty.
func encodeMap(v reflect.Value) (*yaml.Node, error) {
	if v.Len() == 0 {
		return nil, nil
	}
	m := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	keys := v.MapKeys()
	slices.SortFunc(keys, func(a, b reflect.Value) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range keys {
		n, err := encodeValue(v.MapIndex(k))
		if err != nil {
			return nil, err
		}
		if n == nil {
			if n, err = zeroNode(v.MapIndex(k)); err != nil {
				return nil, err
			}
		}
		m.Content = append(m.Content, scalarNode("!!str", k.String()), n)
	}
	return m, nil
}

// zeroNode renders a scalar even when it is zero.
func zeroNode(v reflect.Value) (*yaml.Node, error) {
	switch v.Kind() {
	case reflect.String:
		return scalarNode("!!str", v.String()), nil
	case reflect.Bool:
		return scalarNode("!!bool", strconv.FormatBool(v.Bool())), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return scalarNode("!!int", strconv.FormatInt(v.Int(), 10)), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return scalarNode("!!int", strconv.FormatUint(v.Uint(), 10)), nil
	case reflect.Float32, reflect.Float64:
		f := strconv.FormatFloat(v.Float(), 'g', -1, 64)
		if !strings.ContainsAny(f, ".eIN") {
			f += ".0" // "1" would read as an int and print with a !!float tag
		}
		return scalarNode("!!float", f), nil
	case reflect.Struct, reflect.Slice, reflect.Map, reflect.Pointer:
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Style: yaml.FlowStyle}, nil
	}
	return nil, fmt.Errorf("unsupported type %v", v.Type())
}

// encodeFields appends the fields of struct v to mapping m.
func encodeFields(m *yaml.Node, v reflect.Value) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			if err := encodeFields(m, v.Field(i)); err != nil {
				return err
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		n, err := encodeValue(v.Field(i))
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if n != nil {
			m.Content = append(m.Content, scalarNode("!!str", name), n)
		}
	}
	return nil
}

// encodeText renders a TextMarshaler by its text, left out when the text is
// empty. An enum's zero value is a real choice with a name (failure_mode:
// envoy), so it is rendered.
func encodeText(v reflect.Value) (*yaml.Node, error) {
	text, err := v.Interface().(encoding.TextMarshaler).MarshalText()
	if err != nil || len(text) == 0 {
		return nil, err
	}
	return scalarNode("!!str", string(text)), nil
}
