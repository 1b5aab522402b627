-- return.lua: gives back the unused hits of a block (Store.ReturnBlock):
-- granted hits that a one-request script counted at once for pkg/lease
-- (Store.TakeBlock), of which the replica admitted used, so that other
-- replicas may admit them. Only hits the store still counts against the
-- same limit go back, so the state becomes that of a store that counted
-- fewer hits, never one that forgot admitted hits:
--   fixed window:   count -= granted - used, if the block's window (mark)
--                   is still the current one;
--   sliding window: the same, or, in the window after the block's, its
--                   previous window's count -= granted - used;
--   token bucket:   TAT -= n*T with n = granted - max(used, ceil(e/T)), e
--                   the time since the block was counted (mark, Unix
--                   microseconds) on this server's clock: a block's tokens
--                   decay as the bucket refills (pkg/lease, "The bound"),
--                   and the decayed ones are not given back. No later than
--                   now: a full bucket stays full.
-- A return that arrives late (a paused server, a queued call) gives back
-- less or nothing; never more. The key may have been counted since under
-- another limit (a reload; every algorithm stores the same four numbers):
-- another period or algorithm leaves a stamp that is not the mark's window
-- (or a TAT in the past), and nothing goes back.
--
-- KEYS[1]  the block's key.
-- ARGV[1]  9 little-endian doubles, all integers: flags now_us now_sub
--          algorithm mark granted used period_ns T. flags: 2 server_time
--          (read Redis's TIME; else now_us and now_sub are a test clock's).
--          algorithm: 0 fixed window, 1 sliding window, 2 token bucket. T:
--          the token bucket's emission interval in ns.
-- Reply    the hits given back (an integer).

-- block.go prepends lib.lua (divmod, window, sunpack, spack, TWO52) to this file.

local argv = ARGV[1]
if #argv ~= 72 then
  return redis.error_reply('ERR extauthz return.lua: want 72 argument bytes, got ' .. #argv)
end
local flags, now_us, now_sub, alg, mark, granted, used, period, t = sunpack('<ddddddddd', argv)
if flags >= 2 then
  local tm = redis.call('TIME')
  now_us, now_sub = tm[1] * 1000000 + tm[2], 0
end
local v = redis.call('GET', KEYS[1])
if not v or #v ~= 32 then
  return 0
end
local s, u, c, p = sunpack('<dddd', v)
local n = granted - used
if alg == 0 or alg == 1 then
  -- The current window (the stored one if the clock stepped back).
  local w = window(now_us, now_sub, period, s)
  if s == mark and (w == mark or (alg == 1 and w == mark + 1)) then
    -- Still counted in the current window, or (sliding) in the previous
    -- one, which the stored state becomes at its next write.
    n = min(n, c)
    c = c - n
  elseif alg == 1 and s == mark + 1 and w == s then
    n = min(n, p)
    p = p - n
  else
    return 0
  end
elseif alg == 2 then
  local e = max((now_us - mark) * 1000 + now_sub, 0)
  -- base = TAT - now (ns); beyond 2^52 ns the doubles are not exact:
  -- give nothing back.
  local base = (s - now_us) * 1000 + (u - now_sub)
  if e >= TWO52 or t >= TWO52 or base >= TWO52 then
    return 0
  end
  local q, r = divmod(e, t)
  if r > 0 then
    q = q + 1
  end
  n = min(granted - max(used, q), (divmod(max(base, 0), t)))
  if n <= 0 then
    return 0
  end
  -- The new TAT, now + base - n*T (>= now), as microseconds and nanoseconds.
  local x = now_sub + base - n * t
  local xq, xr = divmod(x, 1000)
  s, u = now_us + xq, xr
else
  return redis.error_reply('ERR extauthz return.lua: unknown algorithm ' .. alg)
end
if n <= 0 then
  return 0
end
redis.call('SET', KEYS[1], spack('<dddd', s, u, c, p), 'KEEPTTL')
return n
