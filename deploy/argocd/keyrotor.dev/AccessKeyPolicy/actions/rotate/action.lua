-- Argo CD action "rotate": asks the operator for one key rotation by giving
-- keyrotor.dev/rotate-requested-at a new value (any new value is one request).
-- The force annotation is removed (a force token left by an earlier request
-- would not force this one anyway); the cooldown applies.
-- Argo CD provides os only through require, with os.date and os.time.
local os = require("os")

if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
local annotations = obj.metadata.annotations
local previous = annotations["keyrotor.dev/rotate-requested-at"]

-- An RFC 3339 UTC timestamp. Two requests in the same second would share it
-- and the second would be lost, so a fraction is added until it is new.
local stamp = os.date("!%Y-%m-%dT%H:%M:%S")
local value = stamp .. "Z"
local fraction = 0
while value == previous do
  fraction = fraction + 1
  value = stamp .. "." .. fraction .. "Z"
end

annotations["keyrotor.dev/rotate-requested-at"] = value
annotations["keyrotor.dev/rotate-force"] = nil
return obj
