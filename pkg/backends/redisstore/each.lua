-- each.lua: the end of every one-request script (take_fixed.lua,
-- take_sliding.lua, take_bucket.lua, which define take): it runs take for
-- KEYS[i] with ARGV[i], in order, and returns the replies back to back
-- (40 bytes each). The pipeline merges the one-request calls of a batch
-- into one call of their script (internal/pipe, Script), so that Redis runs
-- the script machinery and TIME once per batch rather than per request;
-- requests on the same key see each other's writes, as separate calls
-- would.
if #KEYS == 1 then
  return take(KEYS[1], ARGV[1])
end
local out = {}
for i = 1, #KEYS do
  out[i] = take(KEYS[i], ARGV[i])
end
return table.concat(out)
