-- Argo CD health check for keyrotor.dev/AccessKeyPolicy.
-- Argo CD runs it in gopher-lua (Lua 5.1) without the string and math
-- libraries, so it uses only base functions, tables and `..`.
local hs = {}

local REQUEST = "keyrotor.dev/rotate-requested-at"

local function readyCondition(status)
  if status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      return condition
    end
  end
  return nil
end

local function messageOr(condition, fallback)
  if condition.message == nil or condition.message == "" then
    return fallback
  end
  return condition.message
end

local function reasonAndMessage(condition)
  local reason = condition.reason or "Unknown"
  if condition.message == nil or condition.message == "" then
    return reason
  end
  return reason .. ": " .. condition.message
end

local metadata = obj.metadata or {}
local generation = metadata.generation
local status = obj.status

local function waitingForGeneration()
  hs.status = "Progressing"
  if generation == nil then
    hs.message = "waiting for the operator to observe the policy"
  else
    hs.message = "waiting for the operator to observe generation " .. tostring(generation)
  end
  return hs
end

-- The status says nothing about the current spec until the operator has seen it.
if status == nil or status.observedGeneration == nil then
  return waitingForGeneration()
end
if generation ~= nil and status.observedGeneration < generation then
  return waitingForGeneration()
end

local ready = readyCondition(status)
if ready ~= nil and ready.observedGeneration ~= nil and generation ~= nil and ready.observedGeneration < generation then
  return waitingForGeneration()
end

-- An empty annotation is no request, as for the operator.
local annotations = metadata.annotations or {}
local requested = annotations[REQUEST]
local pending = requested ~= nil and requested ~= "" and requested ~= status.lastHandledRotateRequest

-- Suspended is Ready True with reason Suspended (False before 0.3.0).
if ready ~= nil and ready.reason == "Suspended" then
  hs.status = "Suspended"
  hs.message = messageOr(ready, "suspended: the operator makes no Cloudflare call")
  return hs
end

if ready ~= nil and ready.status == "False" then
  -- Reconciling and RateLimited clear on their own; every other reason needs a person.
  if ready.reason ~= "Reconciling" and ready.reason ~= "RateLimited" then
    hs.status = "Degraded"
    hs.message = reasonAndMessage(ready)
    return hs
  end
end

-- The operator refuses a value longer than 253 characters (outcome Failed; it
-- records a short stand-in, so the value itself never shows as handled).
-- Without the string library `#` counts bytes, not characters: a value of
-- multi-byte characters reads as too long only when the last outcome is
-- Failed too.
if pending and #requested > 253 and status.lastRotateOutcome == "Failed" then
  hs.status = "Degraded"
  hs.message = "rotate request refused: " .. REQUEST .. " is longer than 253 characters; set a shorter value"
  return hs
end

if pending then
  hs.status = "Progressing"
  hs.message = "rotation requested (" .. REQUEST .. "=" .. requested .. "), waiting for the operator"
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the operator to report the Ready condition"
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = messageOr(ready, "Reconciled")
  -- A refused or failed request is handled, so not pending: still say how it ended.
  local outcome = status.lastRotateOutcome
  if requested ~= nil and requested == status.lastHandledRotateRequest and outcome ~= nil and outcome ~= "Rotated" then
    hs.message = hs.message .. "; rotate request " .. requested .. ": " .. outcome
  end
  return hs
end

-- Ready False with a transient reason, or Unknown.
hs.status = "Progressing"
hs.message = reasonAndMessage(ready)
return hs
