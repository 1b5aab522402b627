package pipe

import "testing"

// TestReleaseDropsHugeBuffers: a released call keeps a small reply buffer
// for the next call, but not the room of a huge reply.
func TestReleaseDropsHugeBuffers(t *testing.T) {
	c := &Client{}
	c.calls.New = func() any { return &call{done: make(chan struct{}, 1)} }
	for _, tc := range []struct {
		size int
		kept bool
	}{{64, true}, {maxPooled, true}, {maxPooled + 1, false}, {8 << 20, false}} {
		k := &call{done: make(chan struct{}, 1), args: []string{"get", "k"}}
		k.reply.Str = make([]byte, tc.size)
		c.release(k)
		if kept := cap(k.reply.Str) > 0; kept != tc.kept {
			t.Errorf("reply of %d bytes: buffer kept %v, want %v", tc.size, kept, tc.kept)
		}
		if len(k.reply.Str) != 0 || len(k.args) != 0 || k.state.Load() != queued {
			t.Errorf("reply of %d bytes: released call not reset: %+v", tc.size, k)
		}
	}
}
