#include "process.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/error.hpp"

namespace crisd::conmon {

pid_t spawn(const std::vector<std::string>& argv, int in, int out, int err) {
    if (argv.empty()) throw Error(Code::Internal, "spawn: empty command line");
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    UniqueFd null(::open("/dev/null", O_RDWR | O_CLOEXEC));
    if (!null) throw_errno("opening /dev/null");
    const int fds[3] = {in >= 0 ? in : null.get(), out >= 0 ? out : null.get(), err >= 0 ? err : null.get()};

    const pid_t pid = ::fork();
    if (pid < 0) throw_errno("forking for " + argv[0]);
    if (pid == 0) {
        // Child: only async-signal-safe calls from here.
        sigset_t all;
        sigfillset(&all);
        ::sigprocmask(SIG_UNBLOCK, &all, nullptr);
        for (int s : {SIGPIPE, SIGCHLD, SIGTERM, SIGINT, SIGHUP, SIGUSR1}) ::signal(s, SIG_DFL);
        // Move the fds above 2 first so that dup2 onto 0..2 cannot clobber one.
        int high[3];
        for (int i = 0; i < 3; ++i) high[i] = ::fcntl(fds[i], F_DUPFD_CLOEXEC, 3);
        for (int i = 0; i < 3; ++i)
            if (high[i] < 0 || ::dup2(high[i], i) < 0) ::_exit(127);
        ::syscall(SYS_close_range, 3U, ~0U, 0U);
        ::execv(cargv[0], cargv.data());
        const char msg[] = "crisd-conmon: cannot execute ";
        (void)!::write(2, msg, sizeof msg - 1);
        (void)!::write(2, cargv[0], std::strlen(cargv[0]));
        (void)!::write(2, ": ", 2);
        const char* e = std::strerror(errno);
        (void)!::write(2, e, std::strlen(e));
        (void)!::write(2, "\n", 1);
        ::_exit(127);
    }
    return pid;
}

std::string read_small_file(const std::string& path) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) throw_errno("opening " + path);
    std::string out;
    char buf[4096];
    for (;;) {
        const auto n = ::read(fd.get(), buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            throw_errno("reading " + path);
        }
        if (n == 0) return out;
        out.append(buf, static_cast<size_t>(n));
        if (out.size() > 1024 * 1024) throw Error(Code::OutOfRange, path + ": larger than 1 MiB");
    }
}

pid_t read_pid_file(const std::string& path) {
    std::string text;
    try {
        text = read_small_file(path);
    } catch (const Error&) {
        return -1;
    }
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    pid_t pid = -1;
    const auto r = std::from_chars(text.data(), text.data() + text.size(), pid);
    if (text.empty() || r.ec != std::errc() || r.ptr != text.data() + text.size()) return -1;
    return pid;
}

std::string describe_status(int st) {
    if (WIFEXITED(st)) return "exited with status " + std::to_string(WEXITSTATUS(st));
    if (WIFSIGNALED(st)) return "killed by signal " + std::to_string(WTERMSIG(st)) + " (" + ::strsignal(WTERMSIG(st)) + ")";
    return "ended with wait status " + std::to_string(st);
}

int exit_code_of(int st) {
    if (WIFEXITED(st)) return WEXITSTATUS(st);
    if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
    return 255;
}

void Reaper::watch(pid_t pid, OnExit on_exit) {
    for (auto it = unclaimed_.begin(); it != unclaimed_.end(); ++it) {
        if (it->first == pid) {
            const int st = it->second;
            unclaimed_.erase(it);
            on_exit(st);
            return;
        }
    }
    watchers_[pid] = std::move(on_exit);
}

void Reaper::reap() {
    for (;;) {
        int st = 0;
        const pid_t pid = ::waitpid(-1, &st, WNOHANG);
        if (pid <= 0) return;  // 0: none left that exited; -1/ECHILD: no children
        auto it = watchers_.find(pid);
        if (it == watchers_.end()) {
            unclaimed_.emplace_back(pid, st);
            if (unclaimed_.size() > 256) unclaimed_.pop_front();
            continue;
        }
        auto cb = std::move(it->second);
        watchers_.erase(it);
        cb(st);
    }
}

ProcessHandle::ProcessHandle(pid_t pid) : pid_(pid) {
#ifdef SYS_pidfd_open
    const long fd = ::syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) pidfd_.reset(static_cast<int>(fd));
    else if (errno == ESRCH) pid_ = -1;  // already gone (and reaped): nothing to kill
#endif
}

void ProcessHandle::kill(int sig) const {
    if (pid_ <= 0) return;
#ifdef SYS_pidfd_send_signal
    if (pidfd_) {
        if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), sig, nullptr, 0U) == 0 || errno == ESRCH) return;
        // ENOSYS and the like: fall back to kill()
    }
#endif
    ::kill(pid_, sig);
}

}  // namespace crisd::conmon
