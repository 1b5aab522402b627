-- take_sliding.lua: take.lua for one sliding-window request (see
-- take_fixed.lua for when Take sends it, its arguments and its reply; the
-- flags' "count refused" bit is unused: a refused sliding-window request
-- never counts). It mirrors limiter.Limit.Eval's sliding window counter.

local spack = struct.pack
local floor, min, max = math.floor, math.min, math.max
local TWO52 = 4503599627370496
local MAX_STEP_BACK = 3600000000000 -- limiter.MaxClockStepBack in ns

local flags, now_us, now_sub, extra_ms, rq, p, _, h = struct.unpack('<dddddddd', ARGV[1])
if flags >= 2 then
  local t = redis.call('TIME')
  now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  now_sub = 0
end

-- q, r with q = floor(x / y) and x = q*y + r, 0 <= r < y, for integers x
-- >= 0 and y > 0 (the double division may be off by one; fix it).
local function divmod(x, y)
  local q = floor(x / y)
  local r = x - q * y
  if r < 0 then
    q, r = q - 1, r + y
  elseif r >= y then
    q, r = q + 1, r - y
  end
  return q, r
end

-- floor(x*y/z), or its ceiling when up (take.lua's muldiv).
local function muldiv(x, y, z, up)
  local p = x * y
  local q, r
  if p < TWO52 and z < TWO52 then
    q, r = divmod(p, z)
  else
    local qy, ry = divmod(y, z)
    local q2 = 0
    r = 0
    local bit = 1
    while bit * 2 <= x do
      bit = bit * 2
    end
    local rest = x
    while bit >= 1 do
      q2, r = q2 * 2, r * 2
      if r >= z then
        q2, r = q2 + 1, r - z
      end
      if rest >= bit then
        rest = rest - bit
        r = r + ry
        if r >= z then
          q2, r = q2 + 1, r - z
        end
      end
      bit = bit / 2
    end
    q = x * qy + q2
  end
  if up and r > 0 then
    q = q + 1
  end
  return q
end

local w, to_end
if p % 1000 == 0 then
  local e
  w, e = divmod(now_us, p / 1000)
  to_end = (p / 1000 - e) * 1000 - now_sub
else
  local qa, ra = divmod(now_us, p)
  local q2, e = divmod(ra * 1000 + now_sub, p)
  w, to_end = qa * 1000 + q2, p - e
end

local v = redis.call('GET', KEYS[1])
local s, c, pv = false, 0, 0
if v and #v == 32 then
  local u
  s, u, c, pv = struct.unpack('<dddd', v)
end
if s and s > w and (s - w - 1) * p + to_end <= MAX_STEP_BACK then
  w, to_end = s, p
end
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
      redis.call('SET', KEYS[1], val, 'KEEPTTL')
    else
      redis.call('SET', KEYS[1], val, 'PX', max(1, math.ceil((to_end + p) / 1000000) + extra_ms))
    end
  end
  local reset = 0
  if after > 0 then
    reset = to_end + p
  elseif prev > 0 then
    reset = to_end
  end
  return spack('<ddddd', 1, max(0, rq - (weighted + after)), reset, 0, 0)
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
