// crisd's side of crisd-conmon, the per-container monitor: start one, release
// it once it sits in its scope, learn the container's pid or the runtime's
// error, talk to it while the container runs (start, exec, resize, reopen,
// attach) and learn of the exit without polling.
//
//   monitor::Config cfg{...};
//   auto launch = monitor::Launch::spawn(cfg);       // conmon detached, pid known
//   systemd.start_scope("crisd-conmon-" + id + ".scope", {launch.monitor_pid()});
//   launch.release();                                // conmon runs `runtime create`
//   pid_t pid = launch.wait_created(30s);            // or throws the runtime's words
//   monitor::start(cfg.socket_dir, 30s);             // `runtime start`, run by conmon
//   ExitWatcher w(cfg.exit_dir);  ...  read_exit_file(cfg.exit_dir, id)
//
// Everything throws crisd::Error with context. The wire formats are in
// protocol.hpp; the command line is command_line() below.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/error.hpp"
#include "common/fd.hpp"
#include "monitor/protocol.hpp"

namespace crisd::monitor {

// <libexecdir>/crisd/crisd-conmon of this build.
std::string default_conmon_path();

struct Config {
    std::string conmon_path;  // empty: default_conmon_path()
    std::string id;           // 64 hex
    std::string name;
    std::string pod_name;
    std::string pod_namespace;
    std::string bundle;
    std::string runtime_path;                // runc / crun
    std::vector<std::string> runtime_args;   // global args, e.g. {"--root", "/run/crisd/runc"}
    std::string log_path;                    // CRI log file; empty: none
    std::string exit_dir;                    // exit file <exit_dir>/<id>
    std::string socket_dir;                  // attach + ctl sockets; must exist
    bool terminal = false;
    bool stdin = false;
    bool stdin_once = false;
    int64_t log_size_max = -1;               // <= 0: no cap
    bool journal = true;
    int oom_score_adj = -999;                // for conmon itself; clamped to 0 where refused
};

// The argv crisd-conmon is started with (sync and start pipe fds given).
std::vector<std::string> command_line(const Config& cfg, int sync_fd, int start_fd);

// Thrown by wait_created() when `runtime create` failed: what() is the
// runtime's own text, word for word, for the CRI client.
class RuntimeError : public Error {
public:
    explicit RuntimeError(const std::string& text) : Error(Code::Unknown, text) {}
};

// One conmon being started. Not copyable; destroying it before release()
// makes conmon exit without creating anything.
class Launch {
public:
    // posix_spawn()s crisd-conmon (safe in a threaded process), waits for the
    // short-lived first process, and reads conmon's own pid (after its double
    // fork) from the sync pipe within `timeout`.
    static Launch spawn(const Config& cfg, std::chrono::milliseconds timeout = std::chrono::seconds(10));

    pid_t monitor_pid() const { return monitor_pid_; }
    // conmon is in its scope: let it run `runtime create`.
    void release();
    // The container's init pid. Throws RuntimeError with the runtime's text, or
    // crisd::Error (DeadlineExceeded, Internal) naming what went wrong.
    pid_t wait_created(std::chrono::milliseconds timeout);

private:
    Launch() = default;
    SyncMessage read_message(std::chrono::milliseconds timeout, const char* waiting_for);

    UniqueFd sync_;
    UniqueFd start_;
    SyncDecoder decoder_;
    pid_t monitor_pid_ = -1;
    std::string id_;
};

// Control requests to a running conmon (socket_dir as in Config).
// `runtime start`: throws RuntimeError with the runtime's text on failure.
void start(const std::string& socket_dir, std::chrono::milliseconds timeout);
void resize(const std::string& socket_dir, unsigned rows, unsigned cols);
// Reopens the CRI log file (ReopenContainerLog); also SIGUSR1 to the monitor pid.
void reopen_log(const std::string& socket_dir);

struct ExecResult {
    int exit_code = -1;  // or 128+signal
    std::string out;
    std::string err;
    bool timed_out = false;
};
// ExecSync: runs argv in the container via `runtime exec`; conmon keeps
// stdout and stderr up to `cap` bytes each (0: its default, 16 MiB), and of
// what it sends, stdout and stderr together are kept up to `total_cap` bytes
// in the order they came (0: no such cap; a gRPC reply must fit the
// client's message limit). timeout 0: none. A timed-out command is killed
// and reported with timed_out set.
ExecResult exec_sync(const std::string& socket_dir, const std::vector<std::string>& argv,
                     std::chrono::milliseconds timeout, int64_t cap = 0, int64_t total_cap = 0);

// A connection to the attach socket: read "<1|2><bytes>" packets, write stdin.
UniqueFd attach(const std::string& socket_dir);

// Tells which containers have exited: inotify on the exit directory (an exit
// file appears by rename). Poll fd() for readability, then call take().
class ExitWatcher {
public:
    explicit ExitWatcher(const std::string& exit_dir);
    int fd() const { return inotify_.get(); }
    // Ids whose exit file appeared since the last call (never blocks).
    std::vector<std::string> take();
    // Blocks up to `timeout` for the exit file of `id`; nullopt on timeout.
    std::optional<ExitStatus> wait(const std::string& id, std::chrono::milliseconds timeout);

private:
    std::string dir_;
    UniqueFd inotify_;
};

}  // namespace crisd::monitor
