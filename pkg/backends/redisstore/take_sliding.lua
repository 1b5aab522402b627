-- take_sliding.lua: take.lua for one sliding-window request (see
-- take_fixed.lua for when Take sends it, its arguments and its reply; the
-- flags' "count refused" bit is unused: a refused sliding-window request
-- never counts). It mirrors limiter.Limit.Eval's sliding window counter,
-- on lib.lua's muldiv and window and one.lua's clock, which redisstore.go
-- prepends to this file (and each.lua appends).

local function take(key, arg)
  local flags, now_us, now_sub, extra_ms, rq, p, _, h = struct.unpack('<dddddddd', arg)
  now_us, now_sub = clock(flags, now_us, now_sub)

  local v = redis.call('GET', key)
  local s, c, pv = false, 0, 0
  if v and #v == 32 then
    local u
    s, u, c, pv = struct.unpack('<dddd', v)
  end
  local w, to_end = window(now_us, now_sub, p, s)
  if rq == 0 then
    return spack('<ddddd', 0, 0, to_end, to_end, 0)
  end

  local curr, prev = 0, 0
  if s == w then
    curr, prev = c, pv
  elseif s == w - 1 then
    prev = c
  end
  local weighted
  if to_end % 1000 == 0 and p % 1000 == 0 then
    weighted = muldiv(prev, to_end / 1000, p / 1000, true)
  else
    weighted = muldiv(prev, to_end, p, true)
  end
  local after = curr + h
  if weighted + after <= rq then
    if h > 0 then
      local val = spack('<dddd', w, 0, after, prev)
      if s == w then
        redis.call('SET', key, val, 'KEEPTTL')
      else
        redis.call('SET', key, val, 'PX', max(1, math.ceil((to_end + p) / 1000000) + extra_ms))
      end
    end
    local reset = 0
    if after > 0 then
      reset = to_end + p
    elseif prev > 0 then
      reset = to_end
    end
    return spack('<ddddd', 1, max(0, rq - (weighted + after)), reset, 0, w)
  end

  -- Refused: nothing changes. The earliest time the same hits fit
  -- (limiter's slidingRetry).
  local reset = 0
  if curr > 0 then
    reset = to_end + p
  elseif prev > 0 then
    reset = to_end
  end
  local retry = 0
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
  return spack('<ddddd', 0, max(0, rq - (weighted + curr)), reset, retry, 0)
end
