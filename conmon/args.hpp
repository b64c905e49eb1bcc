// crisd-conmon's command line (the contract with crisd; src/monitor builds it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace crisd::conmon {

struct Args {
    std::string id;             // 64-hex container id
    std::string name;           // container name (CONTAINER_NAME)
    std::string pod_name;       // POD_NAME
    std::string pod_namespace;  // POD_NAMESPACE
    std::string bundle;         // OCI bundle directory
    std::string runtime;        // runc / crun path
    std::vector<std::string> runtime_args;  // global runtime args before the command (--root ...)
    std::string log_path;       // CRI log file; empty: none
    std::string exit_dir;       // exit file goes to <exit_dir>/<id>
    std::string socket_dir;     // attach and ctl sockets, console socket, exec pid files
    bool terminal = false;
    bool stdin = false;
    bool stdin_once = false;
    int64_t log_size_max = -1;  // bytes; <= 0: no cap
    int64_t log_line_max = 16 * 1024;  // bytes of text per CRI log line before a P split
    bool journal = true;        // also write each output line to journald
    int oom_score_adj = 0;      // for conmon itself; a refused negative value is clamped to 0
    int sync_fd = -1;
    int start_fd = -1;
    bool foreground = false;    // do not detach (tests, debugging)
};

// Throws crisd::Error (InvalidArgument) naming the option. `--help` is not an
// option: crisd-conmon is started by crisd, not by people.
Args parse_args(const std::vector<std::string>& argv);

// The usage text, for errors.
const char* usage();

}  // namespace crisd::conmon
