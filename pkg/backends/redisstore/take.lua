-- take.lua: one limiter.Store.Take call (or, in Cluster mode, the part of it
-- whose keys share one hash slot), applied atomically.
--
-- It mirrors pkg/limiter exactly: Limit.Eval (algorithms.go) for each
-- request and ApplyAll (batch.go) for the counting modes. Go works in int64
-- nanoseconds; Lua 5.1 numbers are doubles, exact for integers below 2^53, so
-- absolute times are kept as (microseconds, nanosecond remainder) and every
-- computation is done on quantities relative to now or to the window, which
-- stay small. See README.md ("Exactness") for the bounds.
--
-- The script body runs on every call, so it defines few closures and parses
-- its arguments with struct.unpack: both measurably cheaper than the
-- alternatives (a closure each ~0.15us, string.gmatch+tonumber ~0.4us per
-- number).
--
-- KEYS[i]  the counter of request i (duplicates allowed: they share state).
-- ARGV[1]  little-endian int64s:
--            mode now_us now_sub extra_ms want_over1 want_undo
--            then, per key: algorithm requests period_ns burst hits
--          mode: 0 CountAll, 1 CountIfAllAllowed, 2 evaluate only (write
--          nothing). now_us < 0 means "use the server's TIME" (production);
--          now_sub is the sub-microsecond part of a test clock. extra_ms is
--          added to every TTL (tests with a fake clock). algorithm: 0 fixed
--          window, 1 sliding window, 2 token bucket.
-- Value    "stamp count prev" (limiter.State), SET with PX = time to
--          limiter.Limit.Expiry, rounded up to whole milliseconds.
-- Reply    5 integers per key: allowed (0/1), remaining, reset_after_ns,
--          retry_after_ns, over_ns (when want_over1 and refused: how long a
--          one-hit request would still be refused; else 0).
--          With want_undo (Cluster calls spanning slots in CountIfAllAllowed
--          mode, whose other slots may refuse) it is followed by 2 integers
--          per key, remaining and reset_after_ns of a read of the state
--          before the call, and then 2 values per key written: the index
--          (1-based) of its first request and the value written; undo.lua
--          takes the hits back.

local floor, min, max = math.floor, math.min, math.max
local TWO52 = 4503599627370496
-- The largest double below 2^63: replies saturate there, as the int64
-- arithmetic of pkg/limiter does at math.MaxInt64.
local MAXI = 9223372036854774784

local n = #KEYS
local argv = ARGV[1]
if #argv ~= 8 * (6 + 5 * n) then
  return redis.error_reply('ERR extauthz take.lua: want ' .. 8 * (6 + 5 * n) .. ' argument bytes for ' .. n .. ' keys, got ' .. #argv)
end
local mode, now_us, now_sub, extra_ms, want_over1, want_undo, pos = struct.unpack('<i8i8i8i8i8i8', argv)
-- Per request: algorithm, requests, period, burst, hits.
local alg, rqs, per, burst, hits = {}, {}, {}, {}, {}
for i = 1, n do
  alg[i], rqs[i], per[i], burst[i], hits[i], pos = struct.unpack('<i8i8i8i8i8', argv, pos)
end
if now_us < 0 then
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

-- w = floor(now_ns / p) and the time from now to the end of window w
-- (limiter.floorDiv).
local function window(p)
  if p % 1000 == 0 then
    local w, e = divmod(now_us, p / 1000)
    return w, (p / 1000 - e) * 1000 - now_sub
  end
  -- now_ns = now_us*1000 + now_sub and now_us = qa*p + ra.
  local qa, ra = divmod(now_us, p)
  local q2, e = divmod(ra * 1000 + now_sub, p)
  return qa * 1000 + q2, p - e
end

-- eval applies request i's limit with h hits to state st = {s = stamp
-- string, c = count, p = prev} (limiter.Limit.Eval). It returns the new
-- state (nil when unchanged), allowed, remaining, reset_after, retry_after.
local function eval(st, i, h)
  local a, rq, p = alg[i], rqs[i], per[i]

  if a == 2 then
    -- Token bucket (GCRA). R == 0 refuses with P.
    if rq == 0 then
      return nil, false, 0, p, p
    end
    local t, rem = divmod(p, rq) -- T = ceil(P/R)
    if rem ~= 0 then
      t = t + 1
    end
    local b = burst[i] > 0 and burst[i] or rq
    local tolerance = b * t
    -- base = max(TAT, now) - now, from the decimal ns stamp ('' and
    -- negative stamps are long past).
    local base = 0
    local s = st.s
    local len = #s
    if len > 0 and string.byte(s, 1) ~= 45 then
      local hi, lo = 0, tonumber(s)
      if len > 3 then
        hi, lo = tonumber(string.sub(s, 1, len - 3)), tonumber(string.sub(s, len - 2))
      end
      if hi and lo then
        base = max((hi - now_us) * 1000 + (lo - now_sub), 0)
      end
    end
    local need = base + h * t
    local ns, retry, tat = nil, 0, base
    local allowed = need <= tolerance
    if allowed then
      tat = need
      if h > 0 then
        local q, r = divmod(now_sub + need, 1000)
        ns = { s = string.format('%d%03d', now_us + q, r), c = 0, p = 0, ttl = need }
      end
    else
      retry = need - tolerance
    end
    local remaining = 0
    if tat < tolerance then
      remaining = min(floor((tolerance - tat) / t), b)
    end
    return ns, allowed, remaining, tat, retry
  end

  local w, to_end = window(p)
  if rq == 0 then
    return nil, false, 0, to_end, to_end
  end
  local stamp = tonumber(st.s)

  if a == 0 then
    -- Fixed window: refused hits are counted too.
    local count = stamp == w and st.c or 0
    local after = count + h
    local ns = nil
    if h > 0 then
      ns = { s = string.format('%d', w), c = after, p = 0, ttl = to_end }
    end
    local allowed = after <= rq
    return ns, allowed, max(0, rq - after), to_end, allowed and 0 or to_end
  end

  -- Sliding window counter.
  local curr, prev = 0, 0
  if stamp == w then
    curr, prev = st.c, st.p
  elseif stamp == w - 1 then
    prev = st.c
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
  local ns = nil
  if allowed then
    curr = after
    if h > 0 then
      ns = { s = string.format('%d', w), c = curr, p = prev, ttl = to_end + p }
    end
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
  return ns, allowed, max(0, rq - (weighted + curr)), reset, retry
end

-- Load each distinct key's state once.
local states, original = {}, {}
local first = {} -- key -> index of its first request (want_undo)
for i = 1, n do
  local k = KEYS[i]
  if states[k] == nil then
    local st = { s = '', c = 0, p = 0 }
    local v = redis.call('GET', k)
    if v then
      local s, c, p = string.match(v, '^(%-?%d+) (%d+) (%d+)$')
      if s then
        st = { s = s, c = tonumber(c), p = tonumber(p) }
      end
    end
    states[k], original[k], first[k] = st, st, i
  end
end

-- Apply in order (limiter.ApplyAll).
local out = {}
local all = true
local dirty = {}
for i = 1, n do
  local k = KEYS[i]
  local ns, allowed, remaining, reset, retry = eval(states[k], i, hits[i])
  if ns ~= nil then
    states[k] = ns
    dirty[k] = true
  end
  all = all and allowed
  local o = 5 * (i - 1)
  out[o + 1] = allowed and 1 or 0
  out[o + 2] = min(remaining, MAXI)
  out[o + 3] = min(reset, MAXI)
  out[o + 4] = min(retry, MAXI)
  out[o + 5] = 0
end

local written = {}
if mode == 0 or (mode == 1 and all) then
  for k in pairs(dirty) do
    -- Expire at limiter.Limit.Expiry of the state: end of the window
    -- (fixed), end of the next window (sliding), the TAT (token bucket).
    local st = states[k]
    local ms = max(1, math.ceil(st.ttl / 1000000) + extra_ms)
    local v = st.s .. ' ' .. string.format('%d %d', st.c, st.p)
    redis.call('SET', k, v, 'PX', ms)
    written[k] = v
  end
else
  -- Nothing is counted: Remaining and ResetAfter describe the unchanged
  -- state, as a read would; Allowed and RetryAfter keep the in-order values.
  states = original
  for i = 1, n do
    local _, _, remaining, reset = eval(states[KEYS[i]], i, 0)
    out[5 * (i - 1) + 2] = min(remaining, MAXI)
    out[5 * (i - 1) + 3] = min(reset, MAXI)
  end
end

if want_over1 == 1 then
  for i = 1, n do
    local o = 5 * (i - 1)
    if out[o + 1] == 0 then
      local _, allowed, _, _, retry = eval(states[KEYS[i]], i, 1)
      if not allowed then
        out[o + 5] = min(retry, MAXI)
      end
    end
  end
end

if want_undo == 1 then
  for i = 1, n do
    local _, _, remaining, reset = eval(original[KEYS[i]], i, 0)
    out[#out + 1] = min(remaining, MAXI)
    out[#out + 1] = min(reset, MAXI)
  end
  for k, v in pairs(written) do
    out[#out + 1] = first[k]
    out[#out + 1] = v
  end
end

return out
