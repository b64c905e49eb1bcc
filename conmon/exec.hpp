// ExecSync: `runtime exec -d --pid-file P ID CMD...` runs CMD in the container
// (it joins the container's cgroups and namespaces; no new scope); conmon, the
// subreaper, reaps the exec'd process and so has its exit code. stdout and
// stderr are kept up to a cap each; on timeout the process is killed (SIGKILL,
// through its pidfd) and the reply says timed_out. A client that goes away
// kills its exec too.
#pragma once

#include <functional>
#include <map>
#include <memory>

#include "control.hpp"
#include "loop.hpp"
#include "process.hpp"
#include "runtime.hpp"

namespace crisd::conmon {

class ExecRunner {
public:
    ExecRunner(Loop& loop, Reaper& reaper, const Runtime& runtime, std::string pid_dir)
        : loop_(loop), reaper_(reaper), runtime_(runtime), pid_dir_(std::move(pid_dir)) {}
    ~ExecRunner();
    ExecRunner(const ExecRunner&) = delete;
    ExecRunner& operator=(const ExecRunner&) = delete;

    // Throws crisd::Error when it cannot even start the runtime.
    void run(ExecRequest request, std::shared_ptr<ControlConn> conn);
    // Kills whatever still runs (the container has exited).
    void kill_all();
    size_t active() const { return sessions_.size(); }
    // Called after each exec has sent its reply.
    std::function<void()> on_finished;

    static constexpr int64_t kDefaultCap = 16 * 1024 * 1024;

private:
    struct Session;
    void finish(uint64_t id, int exit_code);

    Loop& loop_;
    Reaper& reaper_;
    const Runtime& runtime_;
    std::string pid_dir_;
    std::map<uint64_t, std::shared_ptr<Session>> sessions_;
    uint64_t next_id_ = 1;
};

}  // namespace crisd::conmon
