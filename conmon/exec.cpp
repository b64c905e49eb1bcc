#include "exec.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>

#include "common/error.hpp"
#include "journal.hpp"
#include "monitor/protocol.hpp"

namespace crisd::conmon {

struct ExecRunner::Session {
    std::shared_ptr<ControlConn> conn;
    int64_t cap = kDefaultCap;
    std::string pid_file;
    pid_t runtime_pid = -1;
    ProcessHandle process;  // the exec'd process, once its pid file is read
    UniqueFd out[2];
    uint64_t out_token[2] = {0, 0};
    std::string captured[2];
    UniqueFd timer;
    uint64_t timer_token = 0;
    bool timed_out = false;
    bool done = false;
};

ExecRunner::~ExecRunner() { kill_all(); }

void ExecRunner::kill_all() {
    for (auto& [id, s] : sessions_) {
        s->process.kill(SIGKILL);
        if (s->process.pid() <= 0 && s->runtime_pid > 0) ::kill(s->runtime_pid, SIGKILL);
    }
}

void ExecRunner::run(ExecRequest req, std::shared_ptr<ControlConn> conn) {
    const uint64_t id = next_id_++;
    auto s = std::make_shared<Session>();
    s->conn = conn;
    if (req.cap > 0) s->cap = req.cap;
    s->pid_file = pid_dir_ + "/exec-" + std::to_string(::getpid()) + "-" + std::to_string(id) + ".pid";
    UniqueFd child_ends[2];
    for (int i = 0; i < 2; ++i) {
        int p[2];
        if (::pipe2(p, O_CLOEXEC) != 0) throw_errno("exec: creating an output pipe");
        s->out[i].reset(p[0]);
        child_ends[i].reset(p[1]);
        ::fcntl(p[0], F_SETFL, O_NONBLOCK);
    }
    s->runtime_pid = spawn(runtime_.exec(s->pid_file, req.argv), -1, child_ends[0].get(), child_ends[1].get());
    child_ends[0].reset();
    child_ends[1].reset();

    auto* sp = s.get();
    for (int i = 0; i < 2; ++i) {
        sp->out_token[i] = loop_.add(sp->out[i].get(), EPOLLIN, [this, sp, i](uint32_t) {
            char buf[64 * 1024];
            const auto n = ::read(sp->out[i].get(), buf, sizeof buf);
            if (n > 0) {
                const auto room = static_cast<size_t>(sp->cap) - std::min(sp->captured[i].size(), static_cast<size_t>(sp->cap));
                sp->captured[i].append(buf, std::min(room, static_cast<size_t>(n)));
                return;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
            loop_.remove(sp->out_token[i]);
            sp->out_token[i] = 0;
        });
    }
    if (req.timeout_ms > 0) {
        sp->timer.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
        if (!sp->timer) throw_errno("exec: creating the timeout timer");
        itimerspec its{};
        its.it_value.tv_sec = req.timeout_ms / 1000;
        its.it_value.tv_nsec = (req.timeout_ms % 1000) * 1000000;
        ::timerfd_settime(sp->timer.get(), 0, &its, nullptr);
        sp->timer_token = loop_.add(sp->timer.get(), EPOLLIN, [this, sp](uint32_t) {
            loop_.remove(sp->timer_token);
            sp->timer_token = 0;
            sp->timed_out = true;
            if (sp->process.pid() > 0) sp->process.kill(SIGKILL);
            else if (sp->runtime_pid > 0) ::kill(sp->runtime_pid, SIGKILL);
        });
    }
    conn->on_gone = [this, sp] {
        // crisd gave up on this exec: it must not keep running.
        if (sp->process.pid() > 0) sp->process.kill(SIGKILL);
        else if (sp->runtime_pid > 0) ::kill(sp->runtime_pid, SIGKILL);
    };
    sessions_.emplace(id, std::move(s));

    reaper_.watch(sp->runtime_pid, [this, id, sp](int st) {
        sp->runtime_pid = -1;
        if (exit_code_of(st) != 0 || sp->timed_out) {
            // The runtime could not start the process (its error is on stderr).
            finish(id, exit_code_of(st));
            return;
        }
        const pid_t pid = read_pid_file(sp->pid_file);
        ::unlink(sp->pid_file.c_str());
        if (pid <= 0) {
            sp->captured[1] += "crisd-conmon: the runtime wrote no pid file for the exec'd process\n";
            finish(id, 255);
            return;
        }
        sp->process = ProcessHandle(pid);
        reaper_.watch(pid, [this, id](int pst) { finish(id, exit_code_of(pst)); });
    });
}

void ExecRunner::finish(uint64_t id, int exit_code) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return;
    auto& s = *it->second;
    // What is already in the pipes belongs to the reply; processes the exec'd
    // one left behind may hold them open, so do not wait for EOF.
    for (int i = 0; i < 2; ++i) {
        while (s.out[i]) {
            char buf[64 * 1024];
            const auto n = ::read(s.out[i].get(), buf, sizeof buf);
            if (n <= 0) break;
            const auto room = static_cast<size_t>(s.cap) - std::min(s.captured[i].size(), static_cast<size_t>(s.cap));
            s.captured[i].append(buf, std::min(room, static_cast<size_t>(n)));
        }
        if (s.out_token[i]) loop_.remove(s.out_token[i]);
        s.out[i].reset();
    }
    if (s.timer_token) loop_.remove(s.timer_token);
    ::unlink(s.pid_file.c_str());
    s.conn->on_gone = nullptr;
    for (int i = 0; i < 2; ++i) {
        const char tag = i == 0 ? 'O' : 'E';
        const std::string& data = s.captured[i];
        for (size_t off = 0; off < data.size(); off += monitor::kMaxPacket - 1)
            s.conn->send(tag + data.substr(off, monitor::kMaxPacket - 1));
    }
    s.conn->send("X " + std::to_string(exit_code) + " " + (s.timed_out ? "1" : "0"));
    s.conn->finish();
    sessions_.erase(it);
    if (on_finished) on_finished();
}

}  // namespace crisd::conmon
