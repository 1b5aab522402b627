-- undo.lua: takes back the hits that take.lua counted on one hash slot of a
-- Cluster call in CountIfAllAllowed mode, because another slot of the call
-- refused. It subtracts them rather than restoring the old value, so hits
-- that concurrent calls counted meanwhile stay counted:
--   fixed window:   count -= hits, if still in the window written;
--   sliding window: curr -= hits in the window written, or prev -= hits once
--                   the next window has started;
--   token bucket:   TAT -= hits*T.
-- Calls that ran between take.lua and undo.lua saw the hits and may have
-- been refused for them: the error is on the strict side, except that a
-- token bucket that was full before the call may regain up to the time
-- between the two scripts' worth of tokens (normally a small fraction of
-- one).
--
-- KEYS[i]          a key take.lua wrote.
-- ARGV[4i-3..4i]   algorithm (0 fixed, 1 sliding, 2 token bucket), the value
--                  take.lua wrote, the hits to take back, and T (ns; token
--                  bucket only).
-- Reply            the number of keys changed.

local function divmod(x, y)
  local q = math.floor(x / y)
  local r = x - q * y
  if r < 0 then
    q, r = q - 1, r + y
  elseif r >= y then
    q, r = q + 1, r - y
  end
  return q, r
end

-- The decimal nanosecond stamp s minus d ns (d < 2^53), clamped at 0.
local function stamp_minus(s, d)
  local len = #s
  local hi, lo = 0, tonumber(s)
  if len > 3 then
    hi, lo = tonumber(string.sub(s, 1, len - 3)), tonumber(string.sub(s, len - 2))
  end
  local q, r = divmod(lo - d, 1000)
  if hi + q < 0 then
    return '0'
  end
  return string.format('%d%03d', hi + q, r)
end

local changed = 0
for i = 1, #KEYS do
  local alg, wrote, hits, t = tonumber(ARGV[4 * i - 3]), ARGV[4 * i - 2], tonumber(ARGV[4 * i - 1]), tonumber(ARGV[4 * i])
  local wstamp = string.match(wrote, '^(%-?%d+) ')
  local v = redis.call('GET', KEYS[i])
  local s, c, p
  if v and wstamp then
    s, c, p = string.match(v, '^(%-?%d+) (%d+) (%d+)$')
  end
  if s then
    c, p = tonumber(c), tonumber(p)
    local ok = false
    if alg == 0 or alg == 1 then
      if s == wstamp then
        c, ok = math.max(0, c - hits), true
      elseif alg == 1 and tonumber(s) == tonumber(wstamp) + 1 then
        p, ok = math.max(0, p - hits), true
      end
    elseif alg == 2 and string.byte(s, 1) ~= 45 then
      s, ok = stamp_minus(s, hits * t), true
    end
    if ok then
      redis.call('SET', KEYS[i], s .. ' ' .. string.format('%d', c) .. ' ' .. string.format('%d', p), 'KEEPTTL')
      changed = changed + 1
    end
  end
end
return changed
