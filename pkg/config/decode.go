package config

import (
	"encoding"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// The decoder turns a yaml.Node tree into Go values strictly: an unknown or
// repeated key, a value of the wrong type or out of range is an *Error with
// the file, line, column and key path, and decoding goes on so that every
// problem is reported at once. It also records where each value was, so the
// validate pass can point at it. (yaml.v3's KnownFields reports only the
// first line of each problem and no column.)
//
// Supported field types: string (and named strings such as Secret), bool,
// signed and unsigned integers, floats, time.Duration ("1.5s"), types
// whose pointer implements encoding.TextUnmarshaler (enums such as
// limiter.Algorithm: the UnmarshalText error is the message, so it names
// the value and the choices), pointers, slices, map[string]T and structs.
// Struct fields are named by their yaml tag; `yaml:"-"` skips a field and
// `yaml:",inline"` merges an embedded struct's fields into its parent (names
// must stay unique). A `backend:"memory"` tag on an inline field marks its
// fields as valid only for backends of that type.

// Pos is a position in a YAML file (1-based).
type Pos struct {
	Line, Col int
}

// maxVisits bounds the nodes one decode visits, and maxAliasVisits those
// reached through aliases, so that a "billion laughs" document fails fast
// instead of exhausting memory. (A 16 MiB file holds fewer than maxVisits
// nodes; aliases are the only way to exceed it.)
const (
	maxVisits      = 1 << 23
	maxAliasVisits = 1 << 17
)

type decoder struct {
	file    string
	errs    []error
	pos     map[string]Pos    // path -> position of its value
	present map[string]string // path of each key set -> owner tag ("" or a backend type)
	failed  map[string]bool   // paths whose value could not be decoded
	visits  int
	// aliasDepth counts the aliases being followed; aliasVisits the nodes
	// visited through them.
	aliasDepth, aliasVisits int
	// tooLarge is set once visits passed maxVisits: the value is then
	// incomplete and not worth validating.
	tooLarge bool
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, pos: make(map[string]Pos), present: make(map[string]string), failed: make(map[string]bool)}
}

func (d *decoder) errorf(n *yaml.Node, path, format string, args ...any) {
	d.failed[path] = true
	d.errs = append(d.errs, &Error{File: d.file, Line: n.Line, Col: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

var (
	durationType  = reflect.TypeFor[time.Duration]()
	unmarshalType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// decode stores n into v (which is settable), at key path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if !d.visit(n, path) {
		return
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return
		}
		d.aliasDepth++
		defer func() { d.aliasDepth-- }()
		n = n.Alias
	}
	if n = d.locate(n, path); n == nil {
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // absent: keep the zero value
	}
	t := v.Type()
	switch {
	case t == durationType:
		d.decodeDuration(n, v, path)
		return
	case t == structPtrType:
		d.decodeMetadata(n, v, path)
		return
	case reflect.PointerTo(t).Implements(unmarshalType) && t.Kind() != reflect.Pointer:
		if s, ok := d.scalar(n, path, "a string"); ok {
			if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
				d.errorf(n, path, "%v", err)
			}
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		elem := reflect.New(t.Elem())
		d.decode(n, elem.Elem(), path)
		v.Set(elem)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		d.decodeSlice(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	default:
		d.decodeScalar(n, v, path)
	}
}

// visit counts the visit of n and reports whether the document is still
// small enough to go on.
func (d *decoder) visit(n *yaml.Node, path string) bool {
	d.visits++
	if d.aliasDepth > 0 {
		d.aliasVisits++
	}
	if d.visits > maxVisits || d.aliasVisits > maxAliasVisits {
		if !d.tooLarge {
			d.tooLarge = true
			d.errorf(n, path, "document too large: aliases expand to more than %d values", maxAliasVisits)
		}
		return false
	}
	return true
}

// locate unwraps a document node and records where path's value is; it
// returns nil for an empty document.
func (d *decoder) locate(n *yaml.Node, path string) *yaml.Node {
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		n = n.Content[0]
	}
	if _, seen := d.pos[path]; !seen {
		d.pos[path] = Pos{Line: n.Line, Col: n.Column}
	}
	return n
}

// decodeDuration decodes a duration such as "1.5s".
func (d *decoder) decodeDuration(n *yaml.Node, v reflect.Value, path string) {
	s, ok := d.scalar(n, path, "a duration such as 250ms, 5s or 1m")
	if !ok {
		return
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		d.errorf(n, path, "expected a duration such as 250ms, 5s or 1m, got %q", s)
		return
	}
	v.SetInt(int64(dur))
}

func (d *decoder) decodeSlice(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		d.errorf(n, path, "expected a list, got %s", kindName(n))
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, c := range n.Content {
		d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
	}
	v.Set(s)
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	if t.Key().Kind() != reflect.String {
		d.errorf(n, path, "internal error: unsupported map key type %v", t.Key())
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", kindName(n))
		return
	}
	m := reflect.MakeMap(t)
	for _, kv := range d.pairs(n, path) {
		elem := reflect.New(t.Elem()).Elem()
		p := join(path, kv.key.Value)
		d.decode(kv.value, elem, p)
		m.SetMapIndex(reflect.ValueOf(kv.key.Value).Convert(t.Key()), elem)
	}
	v.Set(m)
}

// decodeScalar decodes strings, booleans and numbers, in range.
func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) {
	switch v.Kind() {
	case reflect.String:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		var b bool
		if d.leaf(n, path, &b, "true or false", "") {
			v.SetBool(b)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		if d.leaf(n, path, &i, "an integer", "!!int") {
			if v.OverflowInt(i) {
				d.errorf(n, path, "%d is out of range", i)
				return
			}
			v.SetInt(i)
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		var i int64
		if d.leaf(n, path, &i, "a non-negative integer", "!!int") {
			if i < 0 || v.OverflowUint(uint64(i)) {
				d.errorf(n, path, "%d is out of range: expected a non-negative integer", i)
				return
			}
			v.SetUint(uint64(i))
		}
	case reflect.Float32, reflect.Float64:
		var f float64
		if d.leaf(n, path, &f, "a number", "") {
			if math.IsNaN(f) || math.IsInf(f, 0) {
				d.errorf(n, path, "expected a finite number, got %q", n.Value)
				return
			}
			v.SetFloat(f)
		}
	default:
		d.errorf(n, path, "internal error: unsupported field type %v", v.Type())
	}
}

// scalar returns n's text when n is a scalar.
func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "expected %s, got %s", want, kindName(n))
		return "", false
	}
	return n.Value, true
}

// leaf decodes a scalar into out with yaml.v3's own resolution (so 0x10
// and YAML 1.1 booleans work as in any YAML file). tag, when set, is the
// resolved tag the scalar must have: yaml.v3 would silently truncate 1.5
// into an integer.
func (d *decoder) leaf(n *yaml.Node, path string, out any, want, tag string) bool {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, path, "expected %s, got %s", want, kindName(n))
		return false
	}
	if tag != "" && n.ShortTag() != tag {
		d.errorf(n, path, "expected %s, got %q", want, n.Value)
		return false
	}
	if err := n.Decode(out); err != nil {
		d.errorf(n, path, "expected %s, got %q", want, n.Value)
		return false
	}
	return true
}

type pair struct {
	key, value *yaml.Node
	merged     bool // from a << merge key: explicit keys override it
}

// pairs returns the key/value pairs of mapping n, merge keys expanded,
// reporting non-string and repeated keys.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var out []pair
	seen := make(map[string]*yaml.Node)
	var add func(m *yaml.Node, merged bool, depth int)
	add = func(m *yaml.Node, merged bool, depth int) {
		for i := 0; i+1 < len(m.Content); i += 2 {
			k, val := m.Content[i], m.Content[i+1]
			d.visits++
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				for val.Kind == yaml.AliasNode && val.Alias != nil {
					val = val.Alias
				}
				srcs := []*yaml.Node{val}
				if val.Kind == yaml.SequenceNode {
					srcs = val.Content
				}
				for _, src := range srcs {
					for src.Kind == yaml.AliasNode && src.Alias != nil {
						src = src.Alias
					}
					if src.Kind != yaml.MappingNode || depth > 32 || d.visits > maxVisits {
						d.errorf(val, path, "a << merge needs a mapping or a list of mappings")
						continue
					}
					add(src, true, depth+1)
				}
				continue
			}
			if k.Kind != yaml.ScalarNode {
				d.errorf(k, path, "expected a string key, got %s", kindName(k))
				continue
			}
			if prev, dup := seen[k.Value]; dup {
				if merged {
					continue // an explicit or earlier key wins over a merged one
				}
				if j := slices.IndexFunc(out, func(p pair) bool { return p.key == prev }); j >= 0 && out[j].merged {
					out[j] = pair{key: k, value: val}
					seen[k.Value] = k
					continue
				}
				d.errorf(k, join(path, k.Value), "repeated key (first at line %d, column %d)", prev.Line, prev.Column)
				continue
			}
			seen[k.Value] = k
			out = append(out, pair{key: k, value: val, merged: merged})
		}
	}
	add(n, false, 0)
	return out
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorf(n, path, "expected a mapping, got %s", kindName(n))
		return
	}
	fields, err := fieldsOf(v.Type())
	if err != nil {
		d.errorf(n, path, "internal error: %v", err)
		return
	}
	for _, kv := range d.pairs(n, path) {
		name := kv.key.Value
		p := join(path, name)
		f, ok := fields.byName[name]
		if !ok {
			if near := closest(name, fields.names); near != "" {
				d.errorf(kv.key, p, "unknown field %q; did you mean %q?", name, near)
			} else {
				d.errorf(kv.key, p, "unknown field %q; expected one of: %s", name, strings.Join(fields.names, ", "))
			}
			continue
		}
		d.present[p] = f.owner
		d.decode(kv.value, v.FieldByIndex(f.index), p)
	}
}

type structField struct {
	index []int
	owner string // backend tag of the inline struct the field comes from
}

type structFields struct {
	byName map[string]structField
	names  []string // in declaration order, for error messages
}

var fieldCache sync.Map // reflect.Type -> *structFields or error

// fieldsOf lists the YAML fields of struct type t, inline structs merged.
func fieldsOf(t reflect.Type) (*structFields, error) {
	if c, ok := fieldCache.Load(t); ok {
		if err, isErr := c.(error); isErr {
			return nil, err
		}
		return c.(*structFields), nil
	}
	sf := &structFields{byName: make(map[string]structField)}
	var walk func(t reflect.Type, index []int, owner string) error
	walk = func(t reflect.Type, index []int, owner string) error {
		for i := range t.NumField() {
			f := t.Field(i)
			tag := f.Tag.Get("yaml")
			if tag == "-" || (!f.IsExported() && !f.Anonymous) {
				continue
			}
			name, opts, _ := strings.Cut(tag, ",")
			idx := append(slices.Clip(index), i)
			if strings.Contains(opts, "inline") {
				if f.Type.Kind() != reflect.Struct {
					return fmt.Errorf("%v.%s: only struct fields can be inline", t, f.Name)
				}
				o := owner
				if b := f.Tag.Get("backend"); b != "" {
					o = b
				}
				if err := walk(f.Type, idx, o); err != nil {
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
			if _, dup := sf.byName[name]; dup {
				return fmt.Errorf("%v: two fields are named %q", t, name)
			}
			sf.byName[name] = structField{index: idx, owner: owner}
			sf.names = append(sf.names, name)
		}
		return nil
	}
	if err := walk(t, nil, ""); err != nil {
		fieldCache.Store(t, err)
		return nil, err
	}
	fieldCache.Store(t, sf)
	return sf, nil
}

// reflectValue returns the settable value ptr points to.
func reflectValue(ptr any) reflect.Value { return reflect.ValueOf(ptr).Elem() }

// closest returns the name within edit distance 2 of s (a likely typo), or
// "" when none or several are that close.
func closest(s string, names []string) string {
	best, bestDist, ties := "", 3, 0
	for _, n := range names {
		switch d := editDistance(s, n); {
		case d < bestDist:
			best, bestDist, ties = n, d, 0
		case d == bestDist:
			ties++
		}
	}
	if ties > 0 {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
