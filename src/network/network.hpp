// Pod networking (CNI). Not built yet: crisd reports NetworkReady=false with
// a reason, and pods that need a network are refused.
#pragma once

#include "common/condition.hpp"

namespace crisd::network {

class Network {
public:
    Condition readiness() const;
};

}  // namespace crisd::network
