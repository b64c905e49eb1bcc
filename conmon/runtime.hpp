// Command lines of the OCI runtime (runc, crun): global args (--root, ...) come
// first, then the command. Nothing here runs anything.
#pragma once

#include <string>
#include <vector>

namespace crisd::conmon {

struct Runtime {
    std::string path;
    std::vector<std::string> global_args;
    std::string id;
    std::string bundle;

    // runtime ARGS create --bundle B --pid-file P [--console-socket S] ID
    std::vector<std::string> create(const std::string& pid_file, const std::string& console_socket) const;
    // runtime ARGS start ID
    std::vector<std::string> start() const;
    // runtime ARGS exec -d --pid-file P ID CMD... (detached, so that the exec'd
    // process becomes conmon's child and its exit code is conmon's to read)
    std::vector<std::string> exec(const std::string& pid_file, const std::vector<std::string>& cmd) const;
};

}  // namespace crisd::conmon
