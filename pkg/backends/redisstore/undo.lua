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

-- Values are take.lua's: 4 little-endian doubles, stamp sub count prev.
-- redisstore.go prepends lib.lua (divmod, sunpack, spack) to this file.

local changed = 0
for i = 1, #KEYS do
  local alg, wrote, hits, t = tonumber(ARGV[4 * i - 3]), ARGV[4 * i - 2], tonumber(ARGV[4 * i - 1]), tonumber(ARGV[4 * i])
  local v = redis.call('GET', KEYS[i])
  if v and #v == 32 and #wrote == 32 then
    local ws = sunpack('<d', wrote)
    local s, u, c, p = sunpack('<dddd', v)
    local ok = false
    if alg == 0 or alg == 1 then
      if s == ws then
        c, ok = math.max(0, c - hits), true
      elseif alg == 1 and s == ws + 1 then
        p, ok = math.max(0, p - hits), true
      end
    elseif alg == 2 then
      -- TAT (s us, u ns) minus hits*T ns, clamped at 0.
      local q, r = divmod(u - hits * t, 1000)
      s, u, ok = s + q, r, true
      if s < 0 then
        s, u = 0, 0
      end
    end
    if ok then
      redis.call('SET', KEYS[i], spack('<dddd', s, u, c, p), 'KEEPTTL')
      changed = changed + 1
    end
  end
end
return changed
