-- bench/real/lua_bench.lua — the `real` suite's lua5.4 case: tables, closures and strings.
-- Binary trees made and dropped (tables), a string builder (concatenation, string.format, gsub),
-- and a table used as a growing and shrinking hash map: Lua's allocator function is realloc/free.
-- Usage: lua5.4 lua_bench.lua [SCALE]   (SCALE 1 is ~1 s here; prints a checksum)
local scale = tonumber(arg[1]) or 1

local function tree(depth)
  if depth == 0 then return {} end
  return { tree(depth - 1), tree(depth - 1) }
end

local function count(t)
  if t[1] == nil then return 1 end
  return 1 + count(t[1]) + count(t[2])
end

local check = 0
local long_lived = tree(14)
for i = 1, math.floor(80 * scale) do
  check = check + count(tree(12))
  local parts = {}
  for j = 1, 2000 do
    parts[#parts + 1] = string.format("%d:%x;", i * j, j)
  end
  local s = table.concat(parts)
  s = s:gsub("1", "one")
  check = check + #s
  local map = {}
  for j = 1, 5000 do map["k" .. (j * 7 % 3001)] = { j, tostring(j) } end
  for k in pairs(map) do if #k % 2 == 0 then map[k] = nil end end
  local n = 0
  for _ in pairs(map) do n = n + 1 end
  check = check + n
end
check = check + count(long_lived)
print(check)
