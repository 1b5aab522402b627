// Package envcompat turns envoyproxy/ratelimit's environment variables into
// an extauthz server file, so that a deployment configured for the
// reference (its variables and its runtime directory of rule files) runs on
// extauthz unchanged, and so that `extauthz config from-env` can print the
// equivalent file for review.
//
// Generate reads the environment through a lookup function (tests pass a
// map) and returns YAML text in which every setting carries a comment
// naming the variable it came from. The caller loads that text with the
// ordinary config loader: there is no second path from variables to
// settings. Variables that extauthz cannot honour are all reported in one
// *Error; variables that are set but change nothing here are listed as
// notes (in the document, and in Result.Notes for a startup log line).
package envcompat

import (
	"fmt"
	"strings"
)

// Getenv returns the value of an environment variable, "" when unset (as
// os.Getenv). An empty value counts as unset.
type Getenv func(name string) string

// Result is a generated server file.
type Result struct {
	// YAML is the server file, with comments.
	YAML []byte
	// Notes name the variables that are set but need no counterpart here,
	// and why (one line each).
	Notes []string
	// Secret reports that YAML holds a secret taken from a variable's value
	// (a REDIS_AUTH of the form user:password, a sentinel password, a
	// REDIS_URL with credentials): do not
	// commit it as is. Plain passwords stay in the environment
	// (password_env).
	Secret bool
}

// Problem is a variable, or a set of variables, extauthz cannot honour.
type Problem struct {
	// Vars are the variables concerned (with their values where these are
	// not secret), e.g. "USE_STATSD=true".
	Vars []string
	// Msg says why, and what to do instead.
	Msg string
}

// Error lists every problem of an environment at once.
type Error struct {
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "envoyproxy/ratelimit compatibility: %d setting(s) of the environment cannot be honoured:", len(e.Problems))
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  - %s: %s", strings.Join(p.Vars, ", "), p.Msg)
	}
	b.WriteString("\nChange or unset these variables, or write a server file (extauthz config from-env prints the rest of it) and run extauthz serve --config FILE. MIGRATING.md lists every variable.")
	return b.String()
}

// Detect returns the reference variables that are set, in the order of
// Variables: serving from the environment is meant when any is set and no
// server file is given.
func Detect(getenv Getenv) []string {
	var set []string
	for _, v := range Variables {
		if getenv(v) != "" {
			set = append(set, v)
		}
	}
	return set
}

// Generate returns the server file for the environment, or an *Error
// listing every variable it cannot honour.
func Generate(getenv Getenv) (*Result, error) {
	g := &gen{env: getenv}
	g.header()
	g.listeners()
	g.logging()
	g.behaviour()
	g.backends()
	g.rules()
	g.stats()
	g.tracing()
	g.inert()
	if len(g.problems) > 0 {
		return nil, &Error{Problems: g.problems}
	}
	g.footer()
	return &Result{YAML: []byte(g.out.String()), Notes: g.notes, Secret: g.secret}, nil
}
