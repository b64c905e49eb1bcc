#include "runtime.hpp"

namespace crisd::conmon {

std::vector<std::string> Runtime::create(const std::string& pid_file, const std::string& console_socket) const {
    std::vector<std::string> argv{path};
    argv.insert(argv.end(), global_args.begin(), global_args.end());
    argv.insert(argv.end(), {"create", "--bundle", bundle, "--pid-file", pid_file});
    if (!console_socket.empty()) argv.insert(argv.end(), {"--console-socket", console_socket});
    argv.push_back(id);
    return argv;
}

std::vector<std::string> Runtime::start() const {
    std::vector<std::string> argv{path};
    argv.insert(argv.end(), global_args.begin(), global_args.end());
    argv.insert(argv.end(), {"start", id});
    return argv;
}

std::vector<std::string> Runtime::exec(const std::string& pid_file, const std::vector<std::string>& cmd) const {
    std::vector<std::string> argv{path};
    argv.insert(argv.end(), global_args.begin(), global_args.end());
    argv.insert(argv.end(), {"exec", "-d", "--pid-file", pid_file, id});
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    return argv;
}

}  // namespace crisd::conmon
