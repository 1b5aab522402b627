-- one.lua: the start of every one-request script (take_fixed.lua,
-- take_sliding.lua, take_bucket.lua, which each.lua ends): the clock of
-- their take.
--
-- clock returns the time of a request: Redis's TIME when its flags ask for
-- it (flags >= 2), read at most once per script call, so every request of a
-- merged call is decided at the same instant; else the test clock's now_us
-- and now_sub it carries.
local t_us
local function clock(flags, now_us, now_sub)
  if flags < 2 then
    return now_us, now_sub
  end
  if not t_us then
    local tm = redis.call('TIME')
    t_us = tm[1] * 1000000 + tm[2] -- the strings coerce: as exact as tonumber, and cheaper
  end
  return t_us, 0
end
