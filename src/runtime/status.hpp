// The runtime's status as the CRI Status (verbose) reports it and
// io.crisd.Daemon1 publishes it: one function, used by both.
#pragma once

#include "status/status.hpp"

namespace crisd::network {
class Network;
}

namespace crisd::runtime {

class Handlers;

// RuntimeReady and NetworkReady, the runtime handlers, and the verbose info
// ("config": the default handler and each handler's binary, root, problem).
status::RuntimeStatus runtime_status(const Handlers& handlers, const network::Network& network);

}  // namespace crisd::runtime
