// Children: spawning the OCI runtime, and reaping. crisd-conmon is a child
// subreaper, so the container's init and every `runtime exec -d` process
// become its children when the runtime exits; SIGCHLD (a signalfd in the loop)
// drives reap(), which waits for every child and hands each status to whoever
// watches that pid. Statuses nobody watches yet are kept a while, so a watcher
// that learns its pid late (from a pid file) still gets it.
// Kills go through a pidfd (pidfd_open/pidfd_send_signal) when the kernel has
// them, so a reused pid is never hit; else through kill().
#pragma once

#include <sys/types.h>

#include <deque>
#include <functional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/fd.hpp"

namespace crisd::conmon {

// Forks and execs argv[0] (a path) with stdin/stdout/stderr set to the given
// fds (-1: /dev/null). Every other fd is closed in the child. Throws crisd::Error.
pid_t spawn(const std::vector<std::string>& argv, int in, int out, int err);

// A small file's content (pid files, /proc, cgroup files); no iostreams in
// crisd-conmon, they cost resident memory. Throws crisd::Error naming the path.
std::string read_small_file(const std::string& path);
// The pid in a pid file; -1 when it is missing, empty or not a number.
pid_t read_pid_file(const std::string& path);

// "runc create" with the exit status: "exited with status 1", "killed by signal 9".
std::string describe_status(int wait_status);
// exit code, or 128+signal.
int exit_code_of(int wait_status);

class Reaper {
public:
    using OnExit = std::function<void(int wait_status)>;
    // Calls on_exit at once when pid was already reaped.
    void watch(pid_t pid, OnExit on_exit);
    void unwatch(pid_t pid) { watchers_.erase(pid); }
    // Reaps every child that has exited (call on SIGCHLD).
    void reap();

private:
    std::unordered_map<pid_t, OnExit> watchers_;
    std::deque<std::pair<pid_t, int>> unclaimed_;
};

// A handle to kill a process by pid without hitting a reused pid.
class ProcessHandle {
public:
    ProcessHandle() = default;
    explicit ProcessHandle(pid_t pid);
    pid_t pid() const { return pid_; }
    void kill(int sig) const;

private:
    pid_t pid_ = -1;
    UniqueFd pidfd_;
};

}  // namespace crisd::conmon
