-- take_fixed.lua: take.lua for fixed-window calls of one request each
-- (limiter.Limit.Eval of algorithms.go, then ApplyAll of batch.go for a
-- call of one request), with only what that needs: take handles one
-- request without tables or loops, on one.lua's clock (prepended), and
-- each.lua, appended, runs it for every request of the script call. Take
-- sends a call of one request here when the local cache is off and the
-- call may count (the common case: one descriptor), and the pipeline merges
-- such calls of a batch into one script call; take.lua handles every other
-- call. TestScriptMatchesLimiter and TestOneKeyScriptsMatchLimiter compare
-- both with pkg/limiter.
--
-- KEYS[i]  the counter of request i.
-- ARGV[i]  8 little-endian doubles, all integers: flags now_us now_sub
--          extra_ms requests period_ns burst hits. flags: 1 count a
--          refused request's hits (CountAll, or a Shadow request) + 2
--          server_time (read Redis's TIME, once per script call; else
--          now_us and now_sub are a test clock's). burst is unused.
-- Value    as take.lua's: stamp (the window index), sub (0), count, prev (0).
-- Reply    per request, as take.lua's for one key: allowed remaining
--          reset_after_ns retry_after_ns mark, packed (40 bytes). mark is,
--          when allowed, the window counted in (the mark of a block,
--          Store.TakeBlock; the token bucket's is the time counted, Unix
--          microseconds); else 0.

local spack = struct.pack
local MAX_STEP_BACK = 3600000000000 -- limiter.MaxClockStepBack in ns

local function take(key, arg)
  local flags, now_us, now_sub, extra_ms, rq, p, _, h = struct.unpack('<dddddddd', arg)
  now_us, now_sub = clock(flags, now_us, now_sub)

  -- w = floor(now_ns / p) and the time from now to the end of window w. The
  -- double divisions may be off by one: each quotient is fixed so that its
  -- remainder is in [0, divisor).
  local w, to_end
  if p % 1000 == 0 then
    local pu = p / 1000
    w = math.floor(now_us / pu)
    local e = now_us - w * pu
    if e < 0 then
      w, e = w - 1, e + pu
    elseif e >= pu then
      w, e = w + 1, e - pu
    end
    to_end = (pu - e) * 1000 - now_sub
  else
    -- now_ns = now_us*1000 + now_sub and now_us = qa*p + ra.
    local qa = math.floor(now_us / p)
    local ra = now_us - qa * p
    if ra < 0 then
      qa, ra = qa - 1, ra + p
    elseif ra >= p then
      qa, ra = qa + 1, ra - p
    end
    local x = ra * 1000 + now_sub
    local q2 = math.floor(x / p)
    local e = x - q2 * p
    if e < 0 then
      q2, e = q2 - 1, e + p
    elseif e >= p then
      q2, e = q2 + 1, e - p
    end
    w, to_end = qa * 1000 + q2, p - e
  end

  local v = redis.call('GET', key)
  local s, c = false, 0
  if v and #v == 32 then
    local u
    s, u, c = struct.unpack('<ddd', v)
  end
  -- A stored window that starts after now by at most MAX_STEP_BACK is the
  -- current one: the clock stepped back (limiter.MaxClockStepBack).
  if s and s > w and (s - w - 1) * p + to_end <= MAX_STEP_BACK then
    w, to_end = s, p
  end
  if rq == 0 then
    return spack('<ddddd', 0, 0, to_end, to_end, 0)
  end

  -- Refused hits are counted too (CountAll, Shadow); else a refused call
  -- counts nothing and reports the count before it.
  local before = 0
  if s == w then
    before = c
  end
  local after = before + h
  if after <= rq then
    if h > 0 then
      if s == w then
        redis.call('SET', key, spack('<dddd', w, 0, after, 0), 'KEEPTTL')
      else
        redis.call('SET', key, spack('<dddd', w, 0, after, 0), 'PX', math.max(1, math.ceil(to_end / 1000000) + extra_ms))
      end
    end
    return spack('<ddddd', 1, rq - after, to_end, 0, w)
  end
  if flags % 2 == 0 then
    return spack('<ddddd', 0, math.max(0, rq - before), to_end, to_end, 0)
  end
  if h == 0 then -- refused on the count alone: nothing changes
    return spack('<ddddd', 0, 0, to_end, to_end, 0)
  end
  if s == w then
    redis.call('SET', key, spack('<dddd', w, 0, after, 0), 'KEEPTTL')
  else
    redis.call('SET', key, spack('<dddd', w, 0, after, 0), 'PX', math.max(1, math.ceil(to_end / 1000000) + extra_ms))
  end
  return spack('<ddddd', 0, 0, to_end, to_end, 0)
end
