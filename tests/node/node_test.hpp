// Helpers for the node suite: it runs inside a test node (scripts/node), as
// root, next to the node's real systemd, journald, D-Bus, runc and registry.
#pragma once

#include <string>

namespace crisd::node {

inline constexpr const char* kCriSocket = "/run/crisd/crisd.sock";

struct Result {
    int exit_code = -1;  // exit status, or 128+signal
    std::string out;     // stdout and stderr together
};

// Runs `command` with /bin/sh -c and captures its output.
Result sh(const std::string& command);

// Like sh(), but a non-zero exit fails the current test (ADD_FAILURE) and the
// output is returned anyway.
std::string must(const std::string& command);

// `systemctl show -p PROP --value UNIT`, without the trailing newline.
std::string unit_property(const std::string& unit, const std::string& property);

// Waits until `systemctl is-active UNIT` prints `state` or `seconds` pass.
bool wait_unit_state(const std::string& unit, const std::string& state, int seconds);

// Quotes a string for /bin/sh.
std::string quote(const std::string& s);

}  // namespace crisd::node
