-- Argo CD resource actions of keyrotor.dev/AccessKeyPolicy. Both ask the
-- operator for one on-demand key rotation; "rotate-force" also skips the cooldown.
local actions = {}
actions["rotate"] = {["displayName"] = "Rotate signing key", ["iconClass"] = "fa fa-fw fa-key"}
actions["rotate-force"] = {["displayName"] = "Rotate signing key (skip cooldown)", ["iconClass"] = "fa fa-fw fa-key"}
return actions
