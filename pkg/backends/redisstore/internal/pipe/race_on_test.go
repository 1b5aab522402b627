//go:build race

package pipe

// raceEnabled: the race detector allocates on its own.
const raceEnabled = true
