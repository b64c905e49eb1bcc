// A readiness condition as the CRI Status reports it (RuntimeReady, NetworkReady).
#pragma once

#include <string>

namespace crisd {

struct Condition {
    std::string type;
    bool status = false;
    std::string reason;   // machine-readable, set when status is false
    std::string message;  // for people, set when status is false
};

}  // namespace crisd
