-- take_bucket.lua: take.lua for one token-bucket (GCRA) request (see
-- take_fixed.lua for when Take sends it, its arguments and its reply; the
-- flags' "count refused" bit is unused: a refused request never counts). It
-- mirrors limiter.Limit.Eval's token bucket, on one.lua's clock.
--
-- Value    as take.lua's: the TAT as stamp microseconds and sub
--          nanoseconds, count and prev 0; its TTL is the TAT.

local floor, min = math.floor, math.min
local TWO62 = 4611686018427387904

local function take(key, arg)
  local flags, now_us, now_sub, extra_ms, rq, p, b, h = struct.unpack('<dddddddd', arg)
  if rq == 0 then
    return struct.pack('<ddddd', 0, 0, p, p, 0)
  end
  now_us, now_sub = clock(flags, now_us, now_sub)

  -- T = ceil(P/R) (the double division may be off by one; fix it).
  local t = floor(p / rq)
  local rem = p - t * rq
  if rem < 0 then
    t, rem = t - 1, rem + rq
  elseif rem >= rq then
    t, rem = t + 1, rem - rq
  end
  if rem ~= 0 then
    t = t + 1
  end
  if b <= 0 then
    b = rq
  end
  local tolerance = min(b * t, TWO62) -- capped as in limiter's tokenBucket

  -- base = max(TAT, now) - now.
  local base = 0
  local v = redis.call('GET', key)
  if v and #v == 32 then
    local s, u = struct.unpack('<dd', v)
    base = math.max((s - now_us) * 1000 + (u - now_sub), 0)
  end
  local need = base + h * t
  if need <= tolerance then
    local remaining = 0
    if need < tolerance then
      remaining = min(floor((tolerance - need) / t), b)
    end
    if h > 0 then
      -- The new TAT, now + need, as microseconds and nanoseconds.
      local x = now_sub + need
      local q = floor(x / 1000)
      local r = x - q * 1000
      if r < 0 then
        q, r = q - 1, r + 1000
      elseif r >= 1000 then
        q, r = q + 1, r - 1000
      end
      redis.call('SET', key, struct.pack('<dddd', now_us + q, r, 0, 0), 'PX', math.max(1, math.ceil(need / 1000000) + extra_ms))
    end
    return struct.pack('<ddddd', 1, remaining, need, 0, now_us)
  end
  local remaining = 0
  if base < tolerance then
    remaining = min(floor((tolerance - base) / t), b)
  end
  return struct.pack('<ddddd', 0, remaining, base, need - tolerance, 0)
end
