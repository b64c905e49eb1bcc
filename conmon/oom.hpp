// Whether the kernel's OOM killer struck in the container's memory cgroup.
// cgroup v1 (these hosts are hybrid): an eventfd registered on
// memory.oom_control through cgroup.event_control, plus its oom_kill counter.
// cgroup v2: memory.events (oom_kill), watched with inotify. The cgroup is
// found from /proc/<pid>/cgroup of the container's init once it exists.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>

#include "common/fd.hpp"
#include "loop.hpp"

namespace crisd::conmon {

class OomWatcher {
public:
    // Never throws: without a memory cgroup to watch it says so once (diag) and
    // reports no OOM.
    OomWatcher(Loop& loop, pid_t pid);
    ~OomWatcher();
    // At the container's exit: whether an OOM kill happened since it started.
    bool oom_killed();
    const std::string& cgroup_dir() const { return dir_; }

private:
    void setup(pid_t pid);
    int64_t read_oom_kill();  // -1: unreadable (the cgroup is gone)
    void on_event();

    Loop& loop_;
    bool v2_ = false;
    std::string dir_;
    UniqueFd control_;  // v1 memory.oom_control, v2 memory.events
    UniqueFd event_;    // v1 eventfd, v2 inotify
    uint64_t token_ = 0;
    int64_t baseline_ = 0;
    bool seen_ = false;       // a kill was counted
};

}  // namespace crisd::conmon
