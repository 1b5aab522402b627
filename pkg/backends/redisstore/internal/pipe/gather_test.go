package pipe

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// TestGatherLeavesNoWakeUp: a call queued just as a gather's silence ends
// claims the wake-up (it fills the batch) while the gather already gives
// up; its token must not be left for the next gather, which would then end
// at once and send a smaller batch. The call's timing is varied around the
// silence so that some runs land in that window.
func TestGatherLeavesNoWakeUp(t *testing.T) {
	cn := &conn{c: &Client{cfg: Config{Gather: minGap}}, wake: make(chan struct{}, 1), quit: make(chan struct{}), busy: true}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	stale := 0
	const runs = 500
	for range runs {
		var wg sync.WaitGroup
		wg.Go(func() {
			time.Sleep(minGap - 40*time.Microsecond + rand.N(80*time.Microsecond))
			if err := cn.enqueue(&call{}); err != nil {
				t.Error(err)
			}
		})
		cn.mu.Lock()
		cn.gather(1, timer)
		cn.mu.Unlock()
		wg.Wait()
		select {
		case <-cn.wake:
			stale++
		default:
		}
		cn.mu.Lock()
		cn.queue = cn.queue[:0]
		cn.mu.Unlock()
	}
	if stale > 0 {
		t.Errorf("%d of %d gathers left a wake-up token behind", stale, runs)
	}
}
