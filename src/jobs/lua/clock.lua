-- Redis's clock as RQ writes timestamps, for a script whose time is when it runs rather than when
-- it was sent (a claim sent ahead behind a blocking wait, see waker.rs). Prepended to claim.lua.
-- Redis's Lua has no os.date: the civil date comes from the day count (H. Hinnant's
-- civil_from_days), exact for every date after 1970.

-- RQ's `%Y-%m-%dT%H:%M:%S.%fZ` (UTC, microseconds) of Unix time `secs` + `micros` / 1e6.
local function rq_time(secs, micros)
  local days = math.floor(secs / 86400)
  local rem = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400 + (month <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', year, month, day,
    math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, micros)
end

-- Now by Redis's clock: the RQ timestamp and the whole Unix seconds.
local function redis_now()
  local t = redis.call('TIME')
  local secs = tonumber(t[1])
  return rq_time(secs, tonumber(t[2])), secs
end
