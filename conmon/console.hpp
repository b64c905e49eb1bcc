// The console socket: for a container with a terminal, the runtime's `create
// --console-socket PATH` connects here and sends the pty master over
// SCM_RIGHTS. Lives only while the container is being created.
#pragma once

#include <string>

#include "common/fd.hpp"

namespace crisd::conmon {

class ConsoleSocket {
public:
    // <dir>/console.sock, or a fresh directory under /tmp when that path is too
    // long for sun_path (the runtime connects by path). Throws crisd::Error.
    explicit ConsoleSocket(const std::string& dir);
    ~ConsoleSocket();
    const std::string& path() const { return path_; }
    int fd() const { return listen_.get(); }
    // Accepts one connection and returns the fd it carries; an invalid fd when
    // nothing is waiting yet. Throws crisd::Error on a malformed message.
    UniqueFd receive();

private:
    std::string path_;
    std::string tmp_dir_;
    UniqueFd listen_;
};

}  // namespace crisd::conmon
