//go:build race

package server

// raceEnabled: the race detector allocates on its own.
const raceEnabled = true
