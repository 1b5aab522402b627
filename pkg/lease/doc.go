// Package lease lets one replica admit a hot key's hits from a block of
// quota it took from a shared store (Redis) in one call, so that a hot key
// costs a store call per block rather than per decision, without ever
// letting the fleet admit more than the limit.
//
// # How
//
// Store wraps a shared limiter.Store. A request whose rule sets
// rate_limit.lease (limiter.Request.Lease) and whose key is hot on this
// replica (limiter.Lease.HotAfter hits seen here within one Period) is
// answered from the replica's block for that key when the block holds its
// hits. When it does not, the replica takes a new block: one Take of the
// inner store, in CountIfAllAllowed mode, of
//
//	block = max(hits, floor(fraction × remaining))
//
// hits, where remaining is the key's Remaining as the store last reported it
// (the capacity once that report is out of date). The request that turns a
// key hot is still a normal call, whose answer sizes the first block, so
// that a key already at its limit never costs a refused block take. The store counts the whole
// block at once, exactly as it would count that many hits, or refuses it and
// counts nothing; a refused block teaches the replica the key's true
// Remaining, and one smaller block may follow. When the block would be no
// larger than the request's hits, the request is sent as a normal request:
// leasing fades out near the limit. Every other request (cold keys, rules
// without lease, reads) goes to the inner store in one call, as without
// leasing.
//
// # The bound
//
// Every hit a replica admits from a block was counted by the store, as part
// of the block, before it was admitted, and a block is used only while the
// store would still count those hits against the same limit:
//
//   - Fixed and sliding window: a block lives until the end of the window
//     it was counted in (the window end the store reported, measured from
//     the moment the block was asked for, so it ends early rather than late
//     on this replica's clock). The fleet's admitted hits in a window are a
//     subset of the hits the store counted in it, so they never exceed the
//     limit. The sliding window's state is only the two windows' counts,
//     never the time of a hit within a window, so a block's hits counted at
//     its start and admitted later in the same window leave every estimate
//     as the store computed it: exact too.
//   - Token bucket: a block of k tokens taken at t decays as the bucket
//     refills: at t+d it holds at most k − ceil(d/T) of them (T = the
//     emission interval, ceil(Period/Requests)), and a hit admitted from it
//     takes one more (a hit admitted before its token decayed counts once:
//     a block drawn at the refill rate lasts k×T). The block's last token
//     is gone at t + k×T. The tokens left in the store's bucket plus
//     the tokens held in every replica's blocks therefore never exceed the
//     burst B, and the fleet admits at most B + d/T hits in any span d, the
//     bucket's own bound.
//
// The cost is early refusals: hits counted in a block and not admitted by
// its replica (stranded) are lost to the others until the window ends (the
// token bucket: until they decay), unless the block is returned (below).
// With n replicas each holding a block, the fleet may refuse up to
// (n−1) × block hits before the limit. Blocks are fraction × remaining, so
// the stranding shrinks as the key nears its limit: with remaining r, at
// most (n−1) × max(hits, floor(fraction × r)).
//
// # Returning blocks
//
// When the wrapped store can take hits back (redisstore.Store: TakeBlock
// marks each block with the window it was counted in, or for the token
// bucket the time; ReturnBlock), a replica gives a block's unused hits
// back when its key has had no hit here for Options.ReturnAfter (a
// goroutine looks every quarter of it), when its key is evicted from the
// table or its limit changes (a config reload), and at Close (a replica
// shutting down): one store call per block,
// off the request path. The block is detached first, so it admits nothing
// more, and a give-back of its hits (CountIfAllAllowed) afterwards is
// ignored: they stay counted. The store takes back only hits it still
// counts against the same limit, so the bound above holds with returns:
//
//   - Fixed window: granted − used, from the block's window only while it
//     is the current one.
//   - Sliding window: the same, or, in the next window, from the previous
//     window's count, which the estimate still weighs.
//   - Token bucket: granted − max(used, ceil(e/T)), e the time since the
//     block was counted, on the store's clock: the tokens that decayed are
//     not given back. A bucket that refilled since the block (and may have
//     been counted afresh) therefore gets nothing back, and a return that
//     reaches the store late gives back less, never more.
//
// A block whose limit changed goes back under the limit it was counted
// with: the key's state (the same four numbers for every algorithm) still
// holds the block's window or, for the token bucket, a time, so a key
// counted since under another period or algorithm no longer matches the
// block's mark and gets nothing back. A failed return strands the block's
// hits until they expire, as without returns.
//
// # Costs
//
// A key that is not hot costs what it costs without leasing (one normal
// call) plus a hash and one slot of a fixed table that counts the key's
// hits. Leased keys live in a table bounded by Options.MaxKeys; when it is
// full, the least recently used of a few sampled entries is evicted (its
// block returned, or stranded when it cannot be), so many distinct keys can neither
// grow memory nor raise the store calls per decision above one. (A block
// take refused because other replicas used the quota since this one last
// heard is followed by a normal call: two calls for one decision, after
// which the replica knows the key's remaining quota.)
//
// # Failover and counting modes
//
// Store wraps one shared backend inside a failover chain. A block the
// store granted stays usable when the store then fails (its hits were
// counted); a failed block take fails the Take, so the chain's breaker and
// fallback act as without leasing, and the fallback (memory) never leases.
// A call answered entirely from blocks takes the chain's local path
// (TakeLocal, chain.LocalTaker): no breaker, no call timeout, while the
// breaker is closed.
// In CountIfAllAllowed mode, hits admitted from a block are given back to
// the block when another request of the call is refused, so nothing is
// counted for the call, as the mode requires.
package lease
