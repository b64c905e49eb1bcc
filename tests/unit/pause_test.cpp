// crisd-pause (conmon/pause.cpp): it waits until SIGTERM or SIGINT and then
// exits 0; other signals a pod's PID 1 may get do not end it. Reaping as PID 1
// of a pod's PID namespace is checked in the node suite (Infra tests).
#include <gtest/gtest.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <thread>

namespace {

using namespace std::chrono_literals;

pid_t spawn_pause() {
    char* argv[] = {const_cast<char*>(CRISD_PAUSE), nullptr};
    char* envp[] = {nullptr};
    pid_t pid = -1;
    EXPECT_EQ(::posix_spawn(&pid, CRISD_PAUSE, nullptr, nullptr, argv, envp), 0);
    // Until its handlers are installed a signal would kill it: wait for them.
    const std::string status = "/proc/" + std::to_string(pid) + "/status";
    for (int i = 0; i < 200; ++i) {
        FILE* f = std::fopen(status.c_str(), "r");
        char line[256];
        bool ready = false;
        while (f && std::fgets(line, sizeof line, f))
            if (std::string(line).rfind("SigCgt:", 0) == 0)
                ready = std::stoull(std::string(line).substr(7), nullptr, 16) & (1ull << (SIGTERM - 1));
        if (f) std::fclose(f);
        if (ready) break;
        std::this_thread::sleep_for(5ms);
    }
    return pid;
}

// Waits up to 5 s; -1 if it is still running.
int wait_exit(pid_t pid) {
    for (int i = 0; i < 500; ++i) {
        int status = 0;
        if (::waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        std::this_thread::sleep_for(10ms);
    }
    return -1;
}

}  // namespace

TEST(Pause, ExitsZeroOnTermAndInt) {
    for (int sig : {SIGTERM, SIGINT}) {
        const pid_t pid = spawn_pause();
        ASSERT_GT(pid, 0);
        std::this_thread::sleep_for(50ms);
        int status = 0;
        EXPECT_EQ(::waitpid(pid, &status, WNOHANG), 0) << "it waits";
        ASSERT_EQ(::kill(pid, sig), 0);
        EXPECT_EQ(wait_exit(pid), 0) << "signal " << sig;
    }
}

TEST(Pause, ChildSignalsDoNotEndIt) {
    const pid_t pid = spawn_pause();
    ASSERT_GT(pid, 0);
    ::kill(pid, SIGCHLD);
    ::kill(pid, SIGWINCH);
    std::this_thread::sleep_for(100ms);
    int status = 0;
    EXPECT_EQ(::waitpid(pid, &status, WNOHANG), 0) << "still waiting";
    ::kill(pid, SIGTERM);
    EXPECT_EQ(wait_exit(pid), 0);
}
