-- wrk script: POSTs Baileys webhooks to /webhook/whatsapp/incoming, each with a fresh message id
-- (or always the same one with REPEAT=1 in the environment), signed with WEBHOOK_SECRET.
--   wrk -t2 -c64 -d10s -s scripts/webhook.lua http://127.0.0.1:8080/webhook/whatsapp/incoming
local counter = 0
local repeat_id = os.getenv("REPEAT") == "1"
local prefix = "wrk-" .. tostring(os.time()) .. "-" .. tostring(math.random(1, 1e9)) .. "-"

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Internal-Secret"] = os.getenv("WEBHOOK_SECRET") or "bench-secret"

function request()
  counter = counter + 1
  local id = repeat_id and "wrk-repeated" or (prefix .. counter)
  local body = '{"tenantId":"bench","payload":{"messages":[{"key":{"id":"' .. id ..
    '","remoteJid":"1@s.whatsapp.net"},"message":{"conversation":"hi"}}]}}'
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("status " .. status .. "\n")
  end
end
