#include "oom.hpp"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <string_view>

#include "common/error.hpp"
#include "journal.hpp"
#include "process.hpp"

namespace crisd::conmon {

namespace {

// The path of pid's cgroup for a v1 controller, or the v2 path ("" if none).
std::string cgroup_path(pid_t pid, const std::string& controller, bool& v2_only) {
    const auto text = read_small_file("/proc/" + std::to_string(pid) + "/cgroup");
    std::string_view rest(text);
    std::string v1, unified;
    int lines = 0;
    while (!rest.empty()) {
        const auto nl = rest.find('\n');
        const auto line = rest.substr(0, nl);
        rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
        if (line.empty()) continue;
        ++lines;
        const auto c1 = line.find(':');
        const auto c2 = line.find(':', c1 + 1);
        if (c1 == std::string_view::npos || c2 == std::string_view::npos) continue;
        auto controllers = line.substr(c1 + 1, c2 - c1 - 1);
        const auto path = line.substr(c2 + 1);
        if (controllers.empty()) unified = path;
        while (!controllers.empty()) {
            const auto comma = controllers.find(',');
            if (controllers.substr(0, comma) == controller) v1 = path;
            controllers.remove_prefix(comma == std::string_view::npos ? controllers.size() : comma + 1);
        }
    }
    v2_only = lines == 1 && !unified.empty();
    return v2_only ? unified : v1;
}

}  // namespace

OomWatcher::OomWatcher(Loop& loop, pid_t pid) : loop_(loop) {
    try {
        setup(pid);
    } catch (const Error& e) {
        diag::warning(std::string("OOM kills will not be reported: ") + e.what());
        control_.reset();
        event_.reset();
    }
}

OomWatcher::~OomWatcher() {
    if (token_) loop_.remove(token_);
}

void OomWatcher::setup(pid_t pid) {
    bool v2_only = false;
    const auto path = cgroup_path(pid, "memory", v2_only);
    if (path.empty()) throw Error(Code::NotFound, "the container has no memory cgroup");
    v2_ = v2_only;
    dir_ = (v2_ ? std::string("/sys/fs/cgroup") : std::string("/sys/fs/cgroup/memory")) + path;
    const std::string file = dir_ + (v2_ ? "/memory.events" : "/memory.oom_control");
    control_.reset(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!control_) throw_errno("opening " + file);
    baseline_ = read_oom_kill();
    if (baseline_ < 0) baseline_ = 0;
    if (v2_) {
        event_.reset(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
        if (!event_) throw_errno("creating inotify for " + file);
        if (::inotify_add_watch(event_.get(), file.c_str(), IN_MODIFY) < 0) throw_errno("watching " + file);
    } else {
        event_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        if (!event_) throw_errno("creating an eventfd for " + file);
        const std::string ctl = dir_ + "/cgroup.event_control";
        const std::string reg = std::to_string(event_.get()) + " " + std::to_string(control_.get());
        UniqueFd cfd(::open(ctl.c_str(), O_WRONLY | O_CLOEXEC));
        if (!cfd) throw_errno("opening " + ctl);
        if (::write(cfd.get(), reg.data(), reg.size()) < 0) throw_errno("registering for OOM events in " + ctl);
    }
    token_ = loop_.add(event_.get(), EPOLLIN, [this](uint32_t) { on_event(); });
}

int64_t OomWatcher::read_oom_kill() {
    if (!control_) return -1;
    char buf[1024];
    const auto n = ::pread(control_.get(), buf, sizeof buf - 1, 0);
    if (n < 0) return -1;
    // "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n" (v1) / "low 0\n...oom_kill 3\n" (v2)
    std::string_view text(buf, static_cast<size_t>(n));
    while (!text.empty()) {
        const auto nl = text.find('\n');
        const auto line = text.substr(0, nl);
        text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
        constexpr std::string_view key = "oom_kill ";
        if (line.substr(0, key.size()) != key) continue;
        int64_t value = 0;
        const auto v = line.substr(key.size());
        std::from_chars(v.data(), v.data() + v.size(), value);
        return value;
    }
    return 0;  // a kernel without the counter: rely on the event
}

void OomWatcher::on_event() {
    char buf[4096];
    while (::read(event_.get(), buf, sizeof buf) > 0) {
    }
    const auto kills = read_oom_kill();
    // v1: the eventfd fires on an OOM in the cgroup, or on its removal (then
    // memory.oom_control reads fail). v2: memory.events changed; count the kills.
    if (kills > baseline_ || (!v2_ && kills >= 0)) seen_ = true;
    if (kills < 0) {
        // v1 also signals the eventfd when the cgroup is removed; nothing more to watch.
        loop_.remove(token_);
        token_ = 0;
    }
}

bool OomWatcher::oom_killed() {
    if (const auto kills = read_oom_kill(); kills > baseline_) seen_ = true;
    return seen_;
}

}  // namespace crisd::conmon
