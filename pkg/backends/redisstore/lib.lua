-- lib.lua: the Lua 5.1 arithmetic on doubles (divmod, muldiv) and the
-- window of a time (limiter.floorDiv, limiter.MaxClockStepBack), written
-- once for take.lua, take_sliding.lua and undo.lua: redisstore.go prepends
-- it to their bodies at package init (Redis runs the concatenation, so the
-- line numbers of its errors count from the top of this file).
-- take_fixed.lua and take_bucket.lua keep their arithmetic inline: in
-- Redis's Lua every local function costs an allocation per call, and those
-- scripts exist to be cheap (README.md, "One-request scripts").
--
-- Lua numbers are doubles, exact for integers below 2^53; times are kept as
-- (microseconds, nanosecond remainder) and durations in ns relative to now
-- or to the window, which stay small. See README.md ("Exactness").

local floor, min, max = math.floor, math.min, math.max
local sunpack, spack = struct.unpack, struct.pack
local TWO52 = 4503599627370496
local TWO62 = 4611686018427387904

-- q, r with q = floor(x / y) and x = q*y + r, 0 <= r < y, for integers x
-- and y > 0 (the double division may be off by one; fix it).
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

-- floor(x*y/z), or its ceiling when up, for integers x, y >= 0 and z > 0;
-- exact when z < 2^52 and the result is below 2^53 (limiter.mulDiv,
-- mulDivCeil).
local function muldiv(x, y, z, up)
  local p = x * y
  local q, r
  if p < TWO52 and z < TWO52 then
    q, r = divmod(p, z)
  else
    -- x*y = x*qy*z + x*ry with ry < z; add floor(x*ry/z) by binary long
    -- multiplication, keeping the remainder below z so every step is exact.
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

-- window returns the index w = floor(now_ns / p) of the window of period p
-- ns holding now, and the time in ns from now to its end (limiter.floorDiv).
-- A stored window s (false for none) that starts after now by at most
-- MAX_STEP_BACK is the current one instead: the clock stepped back
-- (limiter.MaxClockStepBack).
local function window(now_us, now_sub, p, s)
  local MAX_STEP_BACK = 3600000000000 -- limiter.MaxClockStepBack in ns
  local w, to_end
  if p % 1000 == 0 then
    local e
    w, e = divmod(now_us, p / 1000)
    to_end = (p / 1000 - e) * 1000 - now_sub
  else
    -- now_ns = now_us*1000 + now_sub and now_us = qa*p + ra.
    local qa, ra = divmod(now_us, p)
    local q2, e = divmod(ra * 1000 + now_sub, p)
    w, to_end = qa * 1000 + q2, p - e
  end
  if s and s > w and (s - w - 1) * p + to_end <= MAX_STEP_BACK then
    return s, p
  end
  return w, to_end
end
