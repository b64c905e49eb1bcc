#include "network/network.hpp"

namespace crisd::network {

Condition Network::readiness() const {
    return {"NetworkReady", false, "NetworkPluginNotReady",
            "crisd: CNI pod networking is not implemented yet"};
}

}  // namespace crisd::network
