// Package field carries the key path of a settings error, so that the
// config loader can place a package's validation error in the YAML file
// (file:line:col) by its type, never by parsing its text.
//
// A package validates its own settings struct and returns field errors
// whose paths are relative to that struct ("breaker.window"); whoever
// embeds the struct under a key prefixes them with Wrap.
package field

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a problem with the setting at Path.
type Error struct {
	// Path is the setting's key path relative to the struct that was
	// validated, e.g. "breaker.window" or "backends[1].max_keys"; ""
	// means the struct itself.
	Path string
	// Err says what is wrong and what is expected.
	Err error
}

// Error formats e as "path: message", or "message" when Path is empty.
func (e *Error) Error() string {
	if e.Path == "" {
		return e.Err.Error()
	}
	return e.Path + ": " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error at path whose message is formatted as by
// fmt.Errorf (so %w wraps).
func Errorf(path, format string, args ...any) error {
	return &Error{Path: path, Err: fmt.Errorf(format, args...)}
}

// Join returns the key path of name under path: Join("breaker", "window")
// is "breaker.window"; an index ("[2]") joins without a dot.
func Join(path, name string) string {
	switch {
	case path == "":
		return name
	case name == "":
		return path
	case strings.HasPrefix(name, "["):
		return path + name
	}
	return path + "." + name
}

// Wrap places every error in err under prefix: an *Error's path is joined
// below prefix, any other error becomes an *Error at prefix. Errors joined
// with errors.Join are wrapped one by one and joined again. Wrap(p, nil) is
// nil.
func Wrap(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var errs []error
	Each(err, func(path string, e error) {
		errs = append(errs, &Error{Path: Join(prefix, path), Err: e})
	})
	return errors.Join(errs...)
}

// Each calls fn for every problem in err, in order: joined errors
// (errors.Join) are flattened, an *Error gives its path (nested *Errors
// joined into one path) and its message's error, any other error the path
// "". Each(nil, fn) does not call fn.
func Each(err error, fn func(path string, err error)) {
	each("", err, fn)
}

func each(path string, err error, fn func(string, error)) {
	switch e := err.(type) {
	case nil:
	case *Error:
		each(Join(path, e.Path), e.Err, fn)
	case interface{ Unwrap() []error }:
		for _, x := range e.Unwrap() {
			each(path, x, fn)
		}
	default:
		fn(path, err)
	}
}
