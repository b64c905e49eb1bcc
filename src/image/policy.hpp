// containers-policy.json(5): which images may be pulled. crisd enforces the
// requirements it can check: "insecureAcceptAnything" allows, "reject"
// refuses (PermissionDenied); signature requirements ("signedBy",
// "sigstoreSigned") are refused with FailedPrecondition, since crisd does not
// verify signatures yet. Without a policy file every image is allowed.
#pragma once

#include <string>

#include "image/reference.hpp"

namespace crisd::image {

// Checks `ref` (qualified) against the policy text; `origin` names the file
// in errors. Scopes of the "docker" transport: "host/repo/path" (the most
// specific match wins), "host", "*.domain", then "default".
void check_policy(const std::string& json_text, const std::string& origin, const Reference& ref);

// Reads `path` (missing: allow everything) and checks `ref`.
void check_policy_file(const std::string& path, const Reference& ref);

}  // namespace crisd::image
