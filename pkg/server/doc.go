// Package server is extauthz's gRPC and HTTP edge: the Envoy
// RateLimitService handler, response headers and bodies, Prometheus
// metrics and the HTTP admin endpoints, all over a hot-swappable snapshot of
// the rules.
package server
