// Package config loads, validates and compiles extauthz's server file and
// its envoyproxy/ratelimit-format rule files.
package config

import (
	"io"

	"github.com/extauthz/extauthz/pkg/descriptor"
)

// Config is a loaded, validated server file. Its zero values are the
// documented defaults.
type Config struct {
	// File is the path the config was loaded from ("" for Load).
	File string
	// GRPCAddr and HTTPAddr are the listen addresses (defaults
	// 0.0.0.0:8081 and 0.0.0.0:8080).
	GRPCAddr string `yaml:"grpc_addr"`
	HTTPAddr string `yaml:"http_addr"`

	// TODO(config helper): backends, response headers, default algorithm,
	// count mode, domains, rules_dir.

	// Rules is the compiled rule tree of every domain.
	Rules *descriptor.Set `yaml:"-"`
}

// Load reads a server file from r; name is used in error messages.
func Load(r io.Reader, name string) (*Config, error) { return &Config{Rules: &descriptor.Set{}}, nil }

// LoadFile reads the server file at path, and the rule files of its
// rules_dir.
func LoadFile(path string) (*Config, error) { return &Config{File: path, Rules: &descriptor.Set{}}, nil }
