// The crisd daemon: owns the config, the services and the gRPC server, and
// speaks sd_notify to systemd. main() only parses the command line.
#pragma once

#include "config/config.hpp"

namespace crisd::daemon {

class DaemonManager {
public:
    explicit DaemonManager(config::Config cfg);

    // Serves until SIGTERM or SIGINT, then drains. Returns the exit status.
    // The caller must have blocked those signals in every thread (block_signals()).
    int run();

private:
    config::Config cfg_;
};

// Blocks SIGTERM, SIGINT and SIGPIPE-by-ignore before any thread starts, so
// that run() receives the stop signals synchronously.
void block_signals();

}  // namespace crisd::daemon
