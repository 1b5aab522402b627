-- take.lua: one limiter.Store.Take call (or, in Cluster mode, the part of it
-- whose keys share one hash slot), applied atomically.
--
-- It mirrors pkg/limiter exactly: Limit.Eval (algorithms.go) for each
-- request and ApplyAll (batch.go) for the counting modes. Its arithmetic
-- (divmod, muldiv) and window computation are lib.lua's, which redisstore.go
-- prepends to this file. Go works in int64
-- nanoseconds; Lua 5.1 numbers are doubles, exact for integers below 2^53, so
-- absolute times are kept as (microseconds, nanosecond remainder) and every
-- computation is done on quantities relative to now or to the window, which
-- stay small. See README.md ("Exactness") for the bounds.
--
-- The body runs on every call, and Redis's Lua spends most of a call on
-- allocation, string conversion and redis.call: so arguments, values and the
-- reply are packed doubles (struct.pack/unpack: a quarter of the cost of
-- text), per-request parameters are read from ARGV when needed rather than
-- copied into tables, a call with one key builds two small tables, and a
-- window whose TTL is already right is rewritten with KEEPTTL (half the cost
-- of SET ... PX). BENCHMARKS.md has the instruction counts.
--
-- KEYS[i]  the counter of request i (duplicates allowed: they share state).
-- ARGV[1]  little-endian doubles, all integers:
--            flags now_us now_sub extra_ms
--            then, per key: algorithm requests period_ns burst hits
--          flags: mode (bits 0-1: 0 CountAll, 1 CountIfAllAllowed, 2
--          evaluate only, writing nothing) + 4 want_over1 + 8 want_undo + 16
--          server_time. With server_time the script reads Redis's TIME
--          (production); else now_us and now_sub (the sub-microsecond part)
--          are a test clock's. extra_ms is added to every TTL (tests with a
--          fake clock). algorithm: 0 fixed window, 1 sliding window, 2 token
--          bucket, plus 4 for a Shadow request (limiter.Request.Shadow: its
--          refusal does not stop CountIfAllAllowed from counting the others).
-- Value    4 little-endian doubles, limiter.State: stamp, sub, count, prev.
--          Windows: stamp is the window index, sub 0. Token bucket: the TAT
--          as stamp microseconds and sub nanoseconds. Any other value reads
--          as no state. Written with SET PX = time to limiter.Limit.Expiry,
--          rounded up to whole milliseconds, or KEEPTTL when the key already
--          holds the same window (its TTL was set then and is unchanged).
-- Reply    5 doubles per key: allowed (0/1), remaining, reset_after_ns,
--          retry_after_ns, over_ns (when want_over1 and refused: how long a
--          one-hit request would still be refused; else 0), as one string.
--          With want_undo (Cluster calls spanning slots in CountIfAllAllowed
--          mode, whose other slots may refuse) the reply is an array: first
--          that string extended by 2 doubles per key (remaining and
--          reset_after_ns of a read of the state before the call), then 2
--          elements per key written: the index (1-based) of its first
--          request and the value written; undo.lua takes the hits back.

local n = #KEYS
local argv = ARGV[1]
if #argv ~= 8 * (4 + 5 * n) then
  return redis.error_reply('ERR extauthz take.lua: want ' .. 8 * (4 + 5 * n) .. ' argument bytes for ' .. n .. ' keys, got ' .. #argv)
end
local flags, now_us, now_sub, extra_ms = sunpack('<dddd', argv)
local mode = flags % 4
local want_over1 = flags % 8 >= 4
local want_undo = flags % 16 >= 8
if flags >= 16 then
  local t = redis.call('TIME')
  now_us = t[1] * 1000000 + t[2] -- the strings coerce: as exact as tonumber, and cheaper
  now_sub = 0
end

-- eval applies request i's limit with h hits to the state (s, u, c, pv)
-- (limiter.Limit.Eval; s is false for no state). It returns allowed,
-- remaining, reset_after and retry_after, and, when the state changes, the
-- new state (stamp, sub, count, prev), its TTL in ns, and whether the key's
-- current TTL is already right for it.
local function eval(i, s, u, c, pv, h)
  local a, rq, p, b = sunpack('<dddd', argv, 40 * i - 7)
  a = a % 4 -- without the Shadow flag

  if a == 2 then
    -- Token bucket (GCRA). R == 0 refuses with P.
    if rq == 0 then
      return false, 0, p, p
    end
    local t, rem = divmod(p, rq) -- T = ceil(P/R)
    if rem ~= 0 then
      t = t + 1
    end
    if b <= 0 then
      b = rq
    end
    local tolerance = min(b * t, TWO62) -- capped as in limiter's tokenBucket
    -- base = max(TAT, now) - now.
    local base = 0
    if s then
      base = max((s - now_us) * 1000 + (u - now_sub), 0)
    end
    local need = base + h * t
    if need <= tolerance then
      local remaining = 0
      if need < tolerance then
        remaining = min(floor((tolerance - need) / t), b)
      end
      if h > 0 then
        local q, r = divmod(now_sub + need, 1000)
        return true, remaining, need, 0, now_us + q, r, 0, 0, need, false
      end
      return true, remaining, need, 0
    end
    local remaining = 0
    if base < tolerance then
      remaining = min(floor((tolerance - base) / t), b)
    end
    return false, remaining, base, need - tolerance
  end

  local w, to_end = window(now_us, now_sub, p, s)
  if rq == 0 then
    return false, 0, to_end, to_end
  end

  if a == 0 then
    -- Fixed window: refused hits are counted too.
    local after = h
    if s == w then
      after = c + h
    end
    local allowed = after <= rq
    local retry = 0
    if not allowed then
      retry = to_end
    end
    if h > 0 then
      return allowed, max(0, rq - after), to_end, retry, w, 0, after, 0, to_end, s == w
    end
    return allowed, max(0, rq - after), to_end, retry
  end

  -- Sliding window counter.
  local curr, prev = 0, 0
  if s == w then
    curr, prev = c, pv
  elseif s == w - 1 then
    prev = c
  end
  -- The ratio to_end/p is the same in microseconds, which keeps the
  -- operands small (exact) for long periods.
  local weighted
  if to_end % 1000 == 0 and p % 1000 == 0 then
    weighted = muldiv(prev, to_end / 1000, p / 1000, true)
  else
    weighted = muldiv(prev, to_end, p, true)
  end
  local after = curr + h
  local allowed = weighted + after <= rq
  local write = allowed and h > 0
  if allowed then
    curr = after
  end
  local reset = 0
  if curr > 0 then
    reset = to_end + p
  elseif prev > 0 then
    reset = to_end
  end
  local retry = 0
  if not allowed then
    -- The earliest time the same hits fit (limiter's slidingRetry).
    if h > rq then
      retry = to_end
    else
      local room = rq - curr - h
      if room >= 0 then
        if prev > 0 then
          retry = max(0, to_end - min(muldiv(room, p, prev), p))
        end
      else
        retry = to_end + p - min(muldiv(rq - h, p, curr), p)
      end
    end
  end
  local remaining = max(0, rq - (weighted + curr))
  if write then
    return true, remaining, reset, 0, w, 0, curr, prev, to_end + p, s == w
  end
  return allowed, remaining, reset, retry
end

-- decode returns the state a GET returned (s false for none).
local function decode(v)
  if v and #v == 32 then
    local s, u, c, p = sunpack('<dddd', v)
    return s, u, c, p
  end
  return false, 0, 0, 0
end

-- st holds 6 slots per distinct key, at offset 0 for the key of request
-- 1 and at at[i] for request i of a call with more keys: stamp, sub, count,
-- prev, the TTL to write (false: unchanged) and whether the key's TTL must
-- be set (PX). firsts lists the first request of each distinct key; raw[f]
-- is the value that request read, kept when the call may need the state
-- before it (CountIfAllAllowed, want_undo).
local need_orig = mode ~= 0 or want_undo
local v1 = redis.call('GET', KEYS[1])
local s1, u1, c1, p1 = decode(v1)
local st = { s1, u1, c1, p1, false, false }
local at, firsts, raw
if need_orig then
  raw = { v1 or false }
end
if n > 1 then
  at, firsts = { 0 }, { 1 }
  for i = 2, n do
    local k, o = KEYS[i], nil
    for j = 1, i - 1 do
      if KEYS[j] == k then
        o = at[j]
        break
      end
    end
    if o == nil then
      o = #st
      local v = redis.call('GET', k)
      local s, u, c, p = decode(v)
      st[o + 1], st[o + 2], st[o + 3], st[o + 4], st[o + 5], st[o + 6] = s, u, c, p, false, false
      firsts[#firsts + 1] = i
      if need_orig then
        raw[i] = v or false
      end
    end
    at[i] = o
  end
end

-- Apply in order (limiter.ApplyAll). out holds 5 values per request.
local out
local all = true
for i = 1, n do
  local o = n > 1 and at[i] or 0
  local allowed, remaining, reset, retry, s, u, c, p, ttl, keep =
    eval(i, st[o + 1], st[o + 2], st[o + 3], st[o + 4], sunpack('<d', argv, 65 + 40 * (i - 1)))
  if s then
    st[o + 1], st[o + 2], st[o + 3], st[o + 4], st[o + 5] = s, u, c, p, ttl
    st[o + 6] = st[o + 6] or not keep
  end
  if not allowed and all then
    all = sunpack('<d', argv, 40 * i - 7) >= 4 -- a Shadow request does not veto
  end
  local ok = 0
  if allowed then
    ok = 1
  end
  if i == 1 then
    out = { ok, remaining, reset, retry, 0 }
  else
    local q = 5 * (i - 1)
    out[q + 1], out[q + 2], out[q + 3], out[q + 4], out[q + 5] = ok, remaining, reset, retry, 0
  end
end

-- original returns the state of request i's key before the call (when
-- need_orig).
local original
if need_orig then
  original = function(i)
    if i == 1 then
      return decode(raw[1])
    end
    local o = at[i]
    for _, f in ipairs(firsts) do
      if at[f] == o then
        return decode(raw[f])
      end
    end
  end
end

local written
if mode == 0 or (mode == 1 and all) then
  -- Write each changed key once, at the index of its first request.
  for idx = 1, firsts and #firsts or 1 do
    local f = firsts and firsts[idx] or 1
    local o = n > 1 and at[f] or 0
    if st[o + 5] then
      -- Expire at limiter.Limit.Expiry of the state: end of the window
      -- (fixed), end of the next window (sliding), the TAT (token bucket).
      local v = spack('<dddd', st[o + 1], st[o + 2], st[o + 3], st[o + 4])
      if st[o + 6] then
        redis.call('SET', KEYS[f], v, 'PX', max(1, math.ceil(st[o + 5] / 1000000) + extra_ms))
      else
        redis.call('SET', KEYS[f], v, 'KEEPTTL')
      end
      if want_undo then
        written = written or {}
        written[#written + 1] = f
        written[#written + 1] = v
      end
    end
  end
else
  -- Nothing is counted: Remaining and ResetAfter describe the unchanged
  -- state, as a read would; Allowed and RetryAfter keep the in-order values.
  -- want_over1 then looks at the unchanged state too.
  for i = 1, n do
    local o = n > 1 and at[i] or 0
    st[o + 1], st[o + 2], st[o + 3], st[o + 4] = original(i)
  end
  for i = 1, n do
    local o = n > 1 and at[i] or 0
    local _, remaining, reset = eval(i, st[o + 1], st[o + 2], st[o + 3], st[o + 4], 0)
    out[5 * i - 3], out[5 * i - 2] = remaining, reset
  end
end

if want_over1 then
  for i = 1, n do
    if out[5 * i - 4] == 0 then
      local o = n > 1 and at[i] or 0
      local allowed, _, _, retry = eval(i, st[o + 1], st[o + 2], st[o + 3], st[o + 4], 1)
      if not allowed then
        out[5 * i] = retry
      end
    end
  end
end

local reply
if n == 1 then
  reply = spack('<ddddd', out[1], out[2], out[3], out[4], out[5])
else
  reply = spack('<' .. string.rep('d', 5 * n), unpack(out))
end
if not want_undo then
  return reply
end

local reads = {}
for i = 1, n do
  local s, u, c, p = original(i)
  local _, remaining, reset = eval(i, s, u, c, p, 0)
  reads[2 * i - 1], reads[2 * i] = remaining, reset
end
local res = { reply .. spack('<' .. string.rep('d', 2 * n), unpack(reads)) }
if written then
  for j = 1, #written do
    res[j + 1] = written[j]
  end
end
return res
